"""Behaviour checks for refactors: every packaged job (conf/experiment/) for 2 steps on the tiny model, and a
row-for-row comparison of two such sets of runs (timings aside).

    python scripts/reproduce_jobs.py run OUT            # OUT/<job>/metrics.jsonl, ...
    python scripts/reproduce_jobs.py compare OLD NEW    # one line per job; exit 1 if any row differs

Each job keeps its own schedule and settings, shrunk to two steps that still run each of its episode kinds
(self-play: a solver step then a generator step) with small held-out sets, transformers rollouts and no wandb.
Run it inside a private network namespace (README, Tests); each job starts its own local Ray cluster.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ("model=tiny", "rollout=hf", "steps=2", "save_every=0", "logger.wandb.enabled=false",
          "logger.progress=false", "cluster.num_cpus=8")
JOBS = {
    "selfplay_cpu": ("selfplay.generator_every=1", "selfplay.proposals=2", "selfplay.calibration_instances=2",
                     "selfplay.calibration_rollouts=2", "selfplay.difficulties=[1,2]", "selfplay.max_new_tokens=64",
                     "selfplay.generator_heldout=0", "heldout.tasks=[]", "rollout.sampling.n=2"),
    "grpo_cpu": ("heldout.instances=4", "heldout.samples=2", "heldout.k=2"),
    "coevolve_cpu": ("schedule=[propose_critic,delta_rubric]", "episodes.propose_critic.heldout_tasks=4",
                     "episodes.propose_critic.heldout_samples=2", "episodes.delta_rubric.heldout_tasks=4",
                     "episodes.delta_rubric.reward_model_epochs=1"),
    "memory_cpu": ("schedule_warmup=[memory_expert]", "episodes.memory.heldout_tasks=2",
                   "episodes.memory.lengths=[2000]", "episodes.memory.expert_tasks_per_step=2"),
    "cso_cpu": ("hydra.mode=RUN", "+method=cso", "algorithm.prompts_per_step=4", "episodes.cso.rollout_budget=0"),
    "distill_two_policies": (),
}
TIME_KEYS = ("timing/", "seconds", "per_s", "throughput", "/time", "elapsed")


def run(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for job, extra in JOBS.items():
        run_dir = out / job
        args = [sys.executable, "-m", "cluster.train", f"+experiment={job}", *COMMON, *extra, f"run_dir={run_dir}"]
        t0 = time.perf_counter()
        with (out / f"{job}.log").open("w") as log:
            rc = subprocess.call(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        failed += rc != 0
        print(f"{job:<22} rc={rc}  {time.perf_counter() - t0:6.1f} s  -> {run_dir}", flush=True)
    return 1 if failed else 0


def _rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [{k: v for k, v in json.loads(ln).items() if not any(t in k for t in TIME_KEYS)}
            for ln in path.read_text().splitlines() if ln.strip()]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def compare(old: Path, new: Path) -> int:
    bad = 0
    for job in JOBS:
        a, b = _rows(old / job), _rows(new / job)
        if not a:
            print(f"{job:<22} no rows in {old / job}")
            bad += 1
            continue
        diffs = [f"step {ra.get('step')}: {k} {ra.get(k)!r} -> {rb.get(k)!r}"
                 for ra, rb in zip(a, b) for k in sorted(set(ra) | set(rb)) if not _same(ra.get(k), rb.get(k))]
        if len(a) != len(b):
            diffs.insert(0, f"{len(a)} rows -> {len(b)} rows")
        print(f"{job:<22} {len(a)} rows, {len(a[0])} keys: " + ("same" if not diffs else f"{len(diffs)} differences"))
        for d in diffs[:10]:
            print(f"    {d}")
        bad += bool(diffs)
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        sys.exit(run(Path(sys.argv[2]).resolve()))
    if len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
