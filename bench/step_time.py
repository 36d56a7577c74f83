"""Step time on equal work: EvoForge vs TRL's GRPOTrainer (CPU, tiny model).

Work per optimizer step, on both sides: 8 prompts x 4 samples x up to 16 new tokens from the
`tiny` random Llama (fp32), scored by the repeat_digits environment, one AdamW step (lr 3e-3,
no KL/reference model, clip 0.2, token-mean loss, group-normalised advantages).

    make bench                                   # 12 steps per side, 1 repeat
    .venv/bin/python bench/step_time.py --steps 20 --repeats 3
    .venv/bin/python bench/step_time.py --quick  # smoke run

Each side runs in its own subprocess, one after the other, so each has the machine to itself.
The first WARMUP steps of every run are dropped (lazy init, allocator and thread-pool warm-up).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
WARMUP = 2
PROMPTS, N, NEW_TOKENS, LR, SEED = 8, 4, 16, 3e-3, 0


def child_env(tmp: Path) -> dict:
    """Offline, quiet, nothing written to the real home. HOME is persistent (bench/out/home) so that
    compiled extensions and caches are warm, as on a user's second run; Ray's session files go to tmp."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false",
               HOME=str(OUT / "home"), RAY_TMPDIR=str(tmp / "ray"), PYTHONPATH=str(ROOT))
    env.setdefault("EVOFORGE_CACHE", str(OUT / "cache"))  # both sides load the same tiny model folder
    for d in (env["HOME"], env["RAY_TMPDIR"], env["EVOFORGE_CACHE"]):
        Path(d).mkdir(parents=True, exist_ok=True)
    return env


def data_seeds(step: int) -> list[int]:
    """The instance seeds EvoForge's driver uses at `step` (cluster/driver.py), so TRL gets the same prompts."""
    base = SEED * 1_000_003 + step * 10_007
    return [base + i for i in range(PROMPTS)]


# -- EvoForge: the real CLI ---------------------------------------------------------------------
def run_evoforge(steps: int, tmp: Path, log: Path) -> dict:
    run_dir = tmp / "evoforge-run"
    cmd = [sys.executable, "-m", "cluster.train", f"run_dir={run_dir}", f"steps={steps}", f"seed={SEED}",
           "logger.progress=false", "logger.wandb.enabled=false", "save_every=0",
           f"rollout.sampling.max_new_tokens={NEW_TOKENS}", f"rollout.sampling.n={N}",
           f"algorithm.prompts_per_step={PROMPTS}"]
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
            "length": [r["response_length/mean"] for r in keep]}


# -- TRL: GRPOTrainer in a child process (this file with --trl-child) ----------------------------
def trl_child(steps: int, result_path: str) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from cluster.config import ModelConfig
    from envs.protocol import load_environment
    from envs.registry import resolve_environment
    from trainers.models import load_tokenizer, prepare_model

    torch.set_num_threads(2)  # both cores; TRL is one process
    cfg = ModelConfig()
    cfg.cache_dir = os.environ["EVOFORGE_CACHE"]  # the dataclass default is an unresolved ${oc.env:...}
    path = prepare_model(cfg)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = load_tokenizer(path)

    name, source = resolve_environment("repeat_digits")
    env = load_environment(source, name)
    rows = []
    for step in range(steps):  # unshuffled, so step s sees exactly EvoForge's prompts of step s
        for seed in data_seeds(step):
            inst = env.sample(random.Random(seed), 2)
            rows.append({"prompt": env.prompt(inst), "digit": inst["digit"], "length": inst["length"]})

    def reward(completions, digit, length, **_):
        return [env.score({"digit": d, "length": n}, c) for c, d, n in zip(completions, digit, length)]

    args = GRPOConfig(
        output_dir=str(Path(result_path).parent / "trl-out"), use_cpu=True, bf16=False, fp16=False, seed=SEED,
        max_steps=steps, learning_rate=LR, lr_scheduler_type="constant",  # EvoForge's lr is constant
        per_device_train_batch_size=PROMPTS * N, gradient_accumulation_steps=1,  # batch counts completions
        steps_per_generation=1, num_iterations=1,  # one generation batch -> exactly one optimizer step
        num_generations=N, max_completion_length=NEW_TOKENS, temperature=1.0, top_p=1.0, top_k=0,
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


def run_trl(steps: int, tmp: Path, log: Path) -> dict:
    result = tmp / "trl.json"
    t0 = time.perf_counter()
    with log.open("w") as f:
        subprocess.run([sys.executable, __file__, "--trl-child", str(result), "--steps", str(steps)], cwd=ROOT,
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


def table(evo: list[dict], trl: list[dict], steps: int, repeats: int) -> str:
    def col(runs, key):
        return med([x for r in runs for x in r.get(key, [])])

    e, t = col(evo, "steps"), col(trl, "steps")
    lines = [f"Median over {repeats} run(s) x {steps - WARMUP} measured steps ({WARMUP} warm-up steps dropped "
             f"per run); work per step: {PROMPTS} prompts x {N} samples x <= {NEW_TOKENS} new tokens, fp32.", "",
             "| system | median s/step | rollout s | score s | update s | weight sync s | startup+teardown s "
             "| mean completion tokens |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, runs, score, sync in (("EvoForge", evo, f"{col(evo, 'score'):.3f}", f"{col(evo, 'sync'):.3f}"),
                                    ("TRL GRPOTrainer", trl, "(in rollout)", "-")):
        over = med([r["overhead"] for r in runs])
        lines.append(f"| {name} | {col(runs, 'steps'):.3f} | {col(runs, 'rollout'):.3f} | {score} "
                     f"| {col(runs, 'update'):.3f} | {sync} | {over:.1f} | {col(runs, 'length'):.1f} |")
    lines += ["", f"**EvoForge / TRL step-time ratio: {e / t:.2f}** (goal: <= 0.50)", "",
              "Notes:", "",
              "- EvoForge runs its defaults: learner = 2 DeepSpeed ranks (ZeRO-2, gloo, 1 thread each), 1 HF-generate "
              "rollout worker (2 threads), 1 env executor (2 worker processes), embedded Ray. Columns are the "
              "driver's timing/rollout (generate), timing/score (env executor), timing/update (advantages, collate, "
              "DeepSpeed forward/backward/step), weight_sync/seconds; timing/step is all of them plus prompt sampling.",
              "- TRL: one process, 2 torch threads; s/step = on_step_begin -> on_step_end; rollout = "
              "_generate_and_score_completions (generate + reward + advantages); update = the rest of the step.",
              "- Startup+teardown = subprocess wall time minus the sum of all step times (EvoForge: Ray, actors, "
              "DeepSpeed init, final checkpoint, shutdown; TRL: imports, model load, trainer init)."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per run (first 2 are warm-up)")
    p.add_argument("--repeats", type=int, default=1, help="runs per side; the median pools all measured steps")
    p.add_argument("--quick", action="store_true", help="smoke run: 4 steps, 1 repeat")
    p.add_argument("--trl-child", metavar="RESULT_JSON", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.trl_child:
        return trl_child(a.steps, a.trl_child)
    steps, repeats = (4, 1) if a.quick else (a.steps, a.repeats)
    if steps <= WARMUP:
        p.error(f"--steps must be > {WARMUP} (warm-up steps are dropped)")
    OUT.mkdir(parents=True, exist_ok=True)
    evo, trl = [], []
    for r in range(repeats):
        with tempfile.TemporaryDirectory(prefix="evoforge-bench-") as tmp:
            for name, fn, runs in (("evoforge", run_evoforge, evo), ("trl", run_trl, trl)):
                log = OUT / f"{name}-{r}.log"
                print(f"[{r + 1}/{repeats}] {name}: {steps} steps (log: {log.relative_to(ROOT)})", flush=True)
                runs.append(fn(steps, Path(tmp), log))
                print(f"    median {med(runs[-1]['steps']):.3f} s/step, wall {runs[-1]['wall']:.1f} s", flush=True)
    md = f"Step time, {date.today()}\n\n" + table(evo, trl, steps, repeats)
    (OUT / "step_time.md").write_text(md + "\n")
    if sys.stdout.isatty():  # rich renders the table in a terminal; logs and pipes get plain markdown
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(md))
    else:
        print(md)
    print(f"\nwritten: {(OUT / 'step_time.md').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
