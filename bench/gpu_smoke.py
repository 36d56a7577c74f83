"""GPU smoke run: the training path on CUDA (vLLM rollout, DeepSpeed over NCCL, weight sync), one command.

On a machine with the project installed for GPU (`make install-gpu`) and at least one CUDA device:

    python bench/gpu_smoke.py [--model smollm2] [--steps 4]

With one GPU, a rollout worker (0.4 GPU) and one learner rank (0.5 GPU) share the card; with two or
more, two learner ranks get a GPU each (NCCL) and the rollout worker shares the first. Prints a table
of the measured steps (rollout tokens/s, update seconds, weight-sync seconds and bytes, step seconds).
Weight sync goes through Ray's object store today; an NCCL broadcast from learner rank 0 is the next
step for GPU clusters.
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    gpus = gpu_count()
    if gpus == 0:
        print("gpu_smoke: no CUDA device here", file=sys.stderr)
        return 2
    ranks = 2 if gpus >= 2 else 1
    run_dir = Path(tempfile.mkdtemp(prefix="evoforge-gpu-smoke-")) / "run"
    overrides = [
        f"model={args.model}", "model.dtype=bfloat16", "rollout=vllm", "rollout.gpus_per_worker=0.4",
        f"learner.world_size={ranks}", f"learner.gpus_per_rank={1.0 if ranks == 2 else 0.5}",
        f"cluster.num_gpus={gpus}", "cluster.num_cpus=8", f"steps={args.steps}", "save_every=0",
        "logger.wandb.enabled=false", "logger.progress=false", f"run_dir={run_dir}",
    ]
    cmd = [sys.executable, "-m", "cluster.train", *overrides]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        print(f"gpu_smoke: training failed with exit code {proc.returncode}", file=sys.stderr)
        return 1
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    measured = rows[1:] or rows  # the first step includes compilation and warm-up

    def med(key: str) -> float:
        return statistics.median(r[key] for r in measured)

    print(f"\nGPU smoke: {gpus} GPU(s), {ranks} learner rank(s), model={args.model}, {len(measured)} measured steps")
    print("| rollout tok/s | rollout s | update s | weight sync s | weight sync MB | step s | reward |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {med('rollout/tokens_per_s'):.0f} | {med('timing/rollout'):.2f} | {med('timing/update'):.2f} | "
          f"{med('weight_sync/seconds'):.2f} | {med('weight_sync/bytes') / 1e6:.0f} | {med('timing/step'):.2f} | "
          f"{med('reward/mean'):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
