"""One learner update, in one process, for each learner lever: where the learner's time goes.

The same GRPO micro batch (rows of a prompt plus a response, token-mean clipped loss, behaviour logprobs =
the model's own) goes through one forward, backward and AdamW step (lr 1e-6, grad clip 1.0) per variant:

- `torch`: plain torch, the model called for every position's logits, foreach AdamW: the peer, what a
  hand-written single-process trainer does;
- `deepspeed zero2`: the DeepSpeed engine at ZeRO stage 2 on one rank, as EvoForge ran a rank before;
- `deepspeed zero0`: stage 0, what one rank runs now (nothing to partition);
- `+ logits from the first response position`: the LM head from the first position the loss reads on;
- `+ logits at the scored columns only` (with --turns above 1: multi-turn rows whose tool outputs between the
  turns are not trained on): the LM head only at the positions the loss reads;
- `+ fused AdamW`: torch's fused kernel;
- `+ bfloat16 autocast`: forward/backward in bf16 over fp32 weights.

    .venv/bin/python bench/learner_step.py                         # SmolLM2-135M, 8 rows x (80 + 32) tokens
    .venv/bin/python bench/learner_step.py --model tiny --rows 32 --prompt 24 --response 16
    .venv/bin/python bench/learner_step.py --rows 4 --prompt 200 --response 32 --turns 6 --tool 160 --skip-bf16

Every variant starts from the same weights; the median of --repeats timed steps after one warm-up step.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = [  # label, engine, logits kept (all | first: from the first scored column | scored), fused AdamW, bf16
    ("torch (peer): all logits, foreach AdamW", "torch", "all", False, False),
    ("deepspeed zero2, one rank (before)", 2, "all", False, False),
    ("deepspeed zero0, one rank", 0, "all", False, False),
    ("+ logits from the first response position", 0, "first", False, False),
    ("+ logits at the scored columns only", 0, "scored", False, False),
    ("+ fused AdamW (EvoForge now)", 0, "scored", True, False),
    ("+ bfloat16 autocast", 0, "scored", True, True),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2", help="tiny | smollm2 (default)")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--prompt", type=int, default=80, help="prompt tokens per row")
    p.add_argument("--response", type=int, default=32, help="response tokens per row (per turn with --turns)")
    p.add_argument("--turns", type=int, default=1, help="model turns per row, with --tool tokens between them")
    p.add_argument("--tool", type=int, default=0, help="tool-output tokens after each turn but the last (not trained on)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--skip-bf16", action="store_true", help="leave out the bf16 row (slow without bf16 instructions)")
    a = p.parse_args()
    os.environ.update(DS_ACCELERATOR="cpu", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    os.environ.setdefault("EVOFORGE_CACHE", str(ROOT / "bench" / "out" / "cache"))
    import torch

    from cluster.config.schema import LearnerConfig, ModelConfig
    from trainers.batch import Trajectory, collate
    from trainers.ds_config import deepspeed_config
    import trainers.grpo
    from trainers.grpo import micro_batch_loss
    from trainers.losses import PolicyLossConfig
    from trainers.models import load_causal_lm, prepare_model

    torch.set_num_threads(a.threads)
    cfg = ModelConfig(name=a.model)
    cfg.cache_dir = os.environ["EVOFORGE_CACHE"]
    path = prepare_model(cfg)
    from transformers import AutoConfig

    vocab = min(AutoConfig.from_pretrained(path).vocab_size, 1000)
    g = torch.Generator().manual_seed(0)
    mask = ([1] * a.response + [0] * a.tool) * (a.turns - 1) + [1] * a.response  # the turns; tool outputs 0
    ts = [Trajectory(prompt_ids=torch.randint(3, vocab, (a.prompt,), generator=g).tolist(),
                     response_ids=torch.randint(3, vocab, (len(mask),), generator=g).tolist(),
                     behaviour_logprobs=[0.0] * len(mask), advantage=float(i % 3 - 1),
                     loss_mask=mask if a.turns > 1 else None) for i in range(a.rows)]
    batch = collate(ts, pad_id=0)
    loss_cfg = PolicyLossConfig()

    import deepspeed

    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    rdzv = tempfile.mkdtemp(prefix="evoforge-bench-rdzv-")
    deepspeed.init_distributed(dist_backend="gloo", init_method=f"file://{rdzv}/init", rank=0, world_size=1,
                               auto_mpi_discovery=False, verbose=False)

    def full_logits(model):
        """The model with the LM head at every position (as before), handing the loss the positions it reads."""
        def call(**kw):
            keep = kw.pop("logits_to_keep", 0)
            out = model(**kw)
            out.logits = out.logits[:, -keep:] if keep else out.logits
            return out
        return call

    def time_variant(engine, logits: str, fused: bool, bf16: bool) -> float:
        keep = logits != "all"
        trainers.grpo.SPARSE_BELOW = SPARSE_BELOW if logits == "scored" else 0.0  # else: one run of columns
        model = load_causal_lm(path, "float32")  # the same starting weights for every variant
        params = [q for q in model.parameters() if q.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-6, fused=True if fused else None)
        if engine == "torch":
            def step():
                loss, _ = micro_batch_loss(full_logits(model), batch, loss_cfg, None, 1.0)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
        else:
            ds = deepspeed_config(LearnerConfig(world_size=1, zero_stage=engine), 1, 1, bf16=False)
            ds["zero_optimization"]["stage"] = engine  # the stage under test, not the one-rank rule
            ds_engine, *_ = deepspeed.initialize(model=model, model_parameters=params, optimizer=opt, config=ds,
                                                 dist_init_required=False)

            def step():
                with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                    loss, _ = micro_batch_loss(ds_engine if keep else full_logits(ds_engine), batch, loss_cfg,
                                               None, 1.0)
                ds_engine.backward(loss)
                ds_engine.step()
        step()  # warm-up
        times = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    SPARSE_BELOW = trainers.grpo.SPARSE_BELOW
    rows = []
    for label, engine, keep, fused, bf16 in VARIANTS:
        if (bf16 and a.skip_bf16) or (keep == "scored" and not fused and a.turns == 1):
            continue  # one turn: the scored columns are one run, the same as from the first response position
        rows.append((label, time_variant(engine, keep, fused, bf16)))
        print(f"{label}: {rows[-1][1]:.3f} s", flush=True)
    peer = rows[0][1]
    shape = (f"{a.response} response" if a.turns == 1 else
             f"{a.turns} turns of {a.response} with {a.tool} tool-output tokens between them")
    print(f"\nOne learner update of {a.model}: {a.rows} rows x ({a.prompt} prompt + {shape}) tokens, "
          f"{a.threads} threads, median of {a.repeats}.\n")
    print("| learner | s/update | ratio to the torch peer |\n|---|---:|---:|")
    for label, t in rows:
        print(f"| {label} | {t:.3f} | {t / peer:.2f} |")


if __name__ == "__main__":
    main()
