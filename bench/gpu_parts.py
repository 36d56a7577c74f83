"""GPU check of the parts that run without Ray: for a CUDA machine that lacks the full stack.

    python bench/gpu_parts.py

- the transformers rollout backend on CUDA (standard sampling and CUTS), bf16 and fp32;
- the GRPO loss and its backward on CUDA in bf16, data-parallel normalisers included;
- a DeepSpeed ZeRO-2 step over NCCL (world size 1) with the learner's own DeepSpeed config;
- the versioned weight transport into the backend (pack on the learner side, load, generate).
Prints a table of timings and checks; exits 1 if a check fails. `bench/gpu_smoke.py` runs the whole
path (Ray, vLLM, DeepSpeed ranks) where those are installed.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from actors.rollout.hf_backend import HFBackend  # noqa: E402
from actors.weights import pack_state_dict, unpack_state_dict  # noqa: E402
from trainers.batch import Trajectory, collate  # noqa: E402
from trainers.ds_config import deepspeed_config  # noqa: E402
from trainers.grpo import micro_batch_loss  # noqa: E402
from trainers.losses import PolicyLossConfig  # noqa: E402
from trainers.models import load_causal_lm, prepare_model  # noqa: E402
from trainers.update_plan import plan_updates  # noqa: E402

ROWS: list[tuple[str, str, str]] = []


def sampling(**kw) -> SimpleNamespace:
    """The fields of cluster.config.schema.SamplingConfig (without importing Hydra, which this check may lack)."""
    base = dict(n=4, max_new_tokens=16, temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, stop=[], cuts_fraction=0.0)
    return SimpleNamespace(**{**base, **kw})


def check(name: str, ok: bool, detail: str) -> None:
    ROWS.append((name, "ok" if ok else "FAILED", detail))


def timed(fn):
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_parts: no CUDA device", file=sys.stderr)
        return 2
    cfg = SimpleNamespace(name="tiny", cache_dir=os.environ.get("EVOFORGE_CACHE", tempfile.mkdtemp()), tiny_arch="llama",
                          tiny_hidden=256, tiny_layers=4, tiny_heads=4, tiny_kv_heads=2, tiny_intermediate=512,
                          tiny_seed=0)
    path = prepare_model(cfg)
    prompts = [[13 + i, 14, 15, 16, 17] for i in range(8)]

    backend = HFBackend(path, "float32", "cuda")
    out, secs = timed(lambda: backend.generate(prompts, sampling(max_new_tokens=32), seed=1))
    tokens = sum(len(s.response_ids) for g in out for s in g)
    check("HF generate fp32 cuda", all(len(g) == 4 for g in out), f"{tokens / secs:.0f} tok/s")
    cuts = backend.generate(prompts, sampling(top_k=5, cuts_fraction=0.5), seed=1)
    exact = all(lp == -math.log(5) or abs(lp + math.log(5)) < 1e-6 for g in cuts for s in g if s.cuts for lp in s.logprobs)
    check("Mixed-CUTS on cuda", exact and [s.cuts for s in cuts[0]] == [False, False, True, True], "log 1/|set|")

    # learner: DeepSpeed ZeRO-2 over NCCL, one rank, bf16, with the learner's config
    import deepspeed

    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    deepspeed.init_distributed(dist_backend="nccl", auto_mpi_discovery=False, verbose=False)
    model = load_causal_lm(path, "bfloat16")
    lc = SimpleNamespace(world_size=1, grad_clip=1.0, zero_stage=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=deepspeed_config(lc, 32, 1, bf16=True),
                                      dist_init_required=False)
    trajs = [Trajectory(prompt_ids=prompts[i // 4], response_ids=s.response_ids, behaviour_logprobs=s.logprobs,
                        group_id=i // 4, advantage=(1.0 if i % 2 else -1.0))
             for i, s in enumerate(s for g in out for s in g)]
    plan = plan_updates(collate(trajs, pad_id=0), 1, 1, 0, "token_mean")[0]
    micro = plan.minibatches[0][0].to("cuda")
    before = {k: v.detach().float().clone() for k, v in engine.module.state_dict().items()}

    def step():
        loss, metrics = micro_batch_loss(engine, micro, PolicyLossConfig(), plan.global_counts[0], 1.0)
        engine.backward(loss)
        engine.step()
        return metrics

    metrics, secs = timed(step)
    moved = sum(int(not torch.equal(before[k], v.float())) for k, v in engine.module.state_dict().items())
    check("DeepSpeed ZeRO-2 NCCL bf16 step", moved > 0 and math.isfinite(metrics["loss"]),
          f"{secs:.3f} s, {moved} tensors updated, logprob gap {metrics['logprob_gap/mean_abs']:.4f}")

    # weight transport: learner state -> flat buffer -> rollout backend
    state = {k: v.float().cpu() for k, v in engine.module.state_dict().items()}
    (msg, buf), secs = timed(lambda: pack_state_dict(state, version=1))
    _, load_s = timed(lambda: backend.load_weights(unpack_state_dict(msg, buf)))
    same = all(torch.equal(backend.named_parameters()[k].cpu(), v) for k, v in state.items())
    check("weight sync learner -> backend", same, f"{msg.nbytes / 1e6:.1f} MB, pack {secs:.3f} s, load {load_s:.3f} s")

    # broadcast transport: the sync group's NCCL process group and the flat layout on the GPU. One GPU
    # allows one NCCL rank per device, so this is the sender alone (world size 1).
    import socket

    from actors.sync_group import SyncGroup, flat_buffer
    from actors.weights import manifest, unpack_flat

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gpu_state = {k: v.float() for k, v in engine.module.state_dict().items()}
    group = SyncGroup("127.0.0.1", port, 0, 1, "nccl", timeout_s=60)
    flat = flat_buffer(gpu_state, group.device)
    _, send_s = timed(lambda: group.send(flat, 2))
    views = unpack_flat(manifest(gpu_state, 2), flat)
    _, load_s = timed(lambda: backend.load_weights(views))
    same = flat.is_cuda and all(torch.equal(backend.named_parameters()[k], v) for k, v in gpu_state.items())
    check("NCCL sync group + flat buffer on cuda", same,
          f"{flat.numel() / 1e6:.1f} MB, send {send_s:.4f} s, load {load_s:.3f} s")

    print(f"\nGPU parts: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, deepspeed {deepspeed.__version__}")
    print("| check | result | detail |\n|---|---|---|")
    for row in ROWS:
        print("| " + " | ".join(row) + " |")
    return 0 if all(r[1] == "ok" for r in ROWS) else 1


if __name__ == "__main__":
    sys.exit(main())
