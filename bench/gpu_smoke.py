"""GPU smoke run: the training path on CUDA (vLLM rollout, DeepSpeed over NCCL, weight sync), one command.

On a machine with the project installed for GPU (`make install-gpu`) and at least one CUDA device:

    python bench/gpu_smoke.py [--model smollm2] [--steps 4]

Runs every layout the machine allows, one short training run each:
- colocated (1+ GPU): a vLLM engine (0.4 GPU) and one learner rank (0.5 GPU) share a card; the engine
  sleeps (weights offloaded, KV cache freed) while the learner trains; weights go through the object store;
- colocated + LoRA: the same, syncing only the adapter into vLLM;
- broadcast (2+ GPUs): learner ranks on their own GPUs (ZeRO-2 over NCCL), the engine on the last GPU,
  weights broadcast from learner rank 0 over an NCCL group.
Prints one table row per layout (rollout tokens/s, update seconds, weight-sync seconds and bytes, step
seconds); exits 1 if a run fails.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def layouts(gpus: int) -> list[tuple[str, list[str]]]:
    colocated = ["rollout.colocate=true", "rollout.gpus_per_worker=0.4", "learner.world_size=1",
                 "learner.gpus_per_rank=0.5"]
    out = [("colocated", colocated), ("colocated + LoRA adapter", colocated + ["learner.lora.rank=16"])]
    if gpus >= 2:
        ranks = min(gpus - 1, 2)
        separate = ["rollout.weight_sync=broadcast", "rollout.gpus_per_worker=1", f"learner.world_size={ranks}",
                    "learner.gpus_per_rank=1"]
        out.append((f"broadcast, {ranks} learner rank(s)", separate))
        # rollouts on their own GPU generate the next step while the learner trains this one
        out.append((f"broadcast, {ranks} learner rank(s), overlapped rollouts", separate + ["rollout.max_staleness=1"]))
    return out


def run(label: str, layout: list[str], args, gpus: int) -> list[str] | None:
    run_dir = Path(tempfile.mkdtemp(prefix="evoforge-gpu-smoke-")) / "run"
    overrides = [
        f"model={args.model}", "model.dtype=bfloat16", "rollout=vllm", *layout,
        f"cluster.num_gpus={gpus}", "cluster.num_cpus=8", f"steps={args.steps}", "save_every=0",
        "logger.wandb.enabled=false", "logger.progress=false", f"run_dir={run_dir}",
    ]
    cmd = [sys.executable, "-m", "cluster.train", *overrides]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        print(f"gpu_smoke: {label}: training failed with exit code {proc.returncode}", file=sys.stderr)
        return None
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    measured = rows[1:] or rows  # the first step includes compilation and warm-up

    def med(key: str) -> float:
        return statistics.median(r[key] for r in measured)

    return [label, f"{med('rollout/tokens_per_s'):.0f}", f"{med('timing/rollout'):.2f}",
            f"{med('timing/update'):.2f}", f"{med('weight_sync/seconds'):.3f}",
            f"{med('weight_sync/bytes') / 1e6:.1f}", f"{med('timing/step'):.2f}",
            f"{med('logprob_gap/mean_abs'):.4f}", f"{med('reward/mean'):.3f}"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    gpus = gpu_count()
    if gpus == 0:
        print("gpu_smoke: no CUDA device here", file=sys.stderr)
        return 2
    rows = [(label, run(label, layout, args, gpus)) for label, layout in layouts(gpus)]
    print(f"\nGPU smoke: {gpus} GPU(s), model={args.model}, median of steps 2..{args.steps}")
    print("| layout | rollout tok/s | rollout s | update s | weight sync s | weight sync MB | step s "
          "| logprob gap | reward |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, row in rows:
        print("| " + " | ".join(row or [label] + ["FAILED"] * 8) + " |")
    return 0 if all(row for _, row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
