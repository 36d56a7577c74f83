"""Each mechanism against its named baseline at one budget: several seeds, the same held-out instances for every
arm, and the paired difference of held-out scores (method - baseline, per instance, pooled over seeds) with its
95% interval. One table, negative rows included.

    unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' .venv/bin/python bench/effects.py cso
    ... bench/effects.py cso --smoke        # the tiny model, 2 steps, 1 seed, 8 held-out instances: the path only

A comparison names its arms (a method and its baselines), what every arm shares (the task, model, budget, held-out
set) and the seeds. An arm is a training run (`evoforge train` overrides) and what to read from it: by default its
held-out scores after training (eval_after.json: one score per instance); a baseline that needs no training of its
own (majority vote over the same candidates, the untrained model) reads another field of the method's run. Each
distinct run and seed trains once under bench/out/effects/<comparison>/<run>/seed<k>/ (<comparison>-smoke/ for
--smoke), started afresh; the scores are paired with the baseline's on the same instances. Wall time is the sum
over the runs behind the two arms.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cluster.evaluation.stats import mean_interval, paired_delta  # noqa: E402

OUT = ROOT / "bench" / "out" / "effects"


def heldout_after(run_dir: Path) -> dict[str, list[float]] | None:
    """The held-out scores after training: task -> one score per instance (eval_after.json)."""
    after = run_dir / "eval_after.json"
    if not after.is_file():
        return None
    return {row["task"]: [float(s) for s in row["scores"]] for row in json.loads(after.read_text())}


@dataclass
class Arm:
    run: str  # the training run it reads (arms of one run share it): a key of Comparison.runs
    read: Callable[[Path], dict[str, list[float]] | None] = heldout_after  # run_dir -> task -> per-instance scores


@dataclass
class Comparison:
    task: str  # what the held-out instances are, for the table
    model: str
    common: tuple[str, ...]  # every run's overrides: task, model, budget, held-out set
    # arm -> its own overrides (one run each) or an Arm; the first is the mechanism, the others baselines
    arms: dict[str, tuple[str, ...] | Arm]
    runs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # run -> overrides, for arms given as Arm
    seeds: tuple[int, ...] = (0, 1, 2)
    smoke: tuple[str, ...] = ()  # overrides of --smoke: the path end to end in a few minutes
    note: str = ""  # why the mechanism has a structural reason to win here
    # the folder its runs live in under bench/out/effects/ (default: its name): comparisons that share a folder
    # share the runs they both name, and with --keep train them once
    folder: str = ""
    # run -> its finished run folders -> markdown lines under the table: what explains the result
    diagnose: Callable[[dict[str, list[Path]]], list[str]] | None = None


def critic_eval(tag: str, field_name: str) -> Callable[[Path], dict[str, list[float]] | None]:
    """One per-set field of a propose_critic run's held-out file (critic_eval_<tag>.json): the critic's greedy
    hits, majority vote's hits ("majority_hits") or a random pick's chance ("random") on the same candidate sets."""
    def read(run_dir: Path) -> dict[str, list[float]] | None:
        path = run_dir / f"critic_eval_{tag}.json"
        if not path.is_file():
            return None
        return {"sets": [float(x) for x in json.loads(path.read_text())[field_name]]}
    return read


def critic_sampled(tag: str) -> Callable[[Path], dict[str, list[float]] | None]:
    """A propose_critic run's sampled picks on its held-out sets (critic_eval_<tag>.json): per set the share of
    heldout_samples picks at the critic's temperature that are right, the critic's probability of a right pick."""
    def read(run_dir: Path) -> dict[str, list[float]] | None:
        path = run_dir / f"critic_eval_{tag}.json"
        if not path.is_file():
            return None
        row = json.loads(path.read_text())
        return {"sets": [float(x) for x in row["sampled"]["rates"]]} if "sampled" in row else None
    return read


# the Propose-then-Critic job (conf/experiment/critic_cpu.yaml), quiet; its baselines read from the same run
CRITIC_JOB = ("+experiment=critic_cpu", "logger.wandb.enabled=false", "logger.progress=false")
# its runs: each held-out set shown in 4 orders per step (1 reply each: the same 4 critic replies a set), and in 1
CRITIC_RUNS = {"four_orders": ("episodes.propose_critic.critic_orders=4", "episodes.propose_critic.critic_samples=1"),
               "one_order": ()}
CRITIC_SMOKE = ("model=tiny", "rollout=hf", "steps=2", "env.name=repeat_digits", "env.difficulty=1",
                "rollout.sampling.max_new_tokens=4", "episodes.propose_critic.heldout_tasks=16")

def judge_eval(tag: str, method: str) -> Callable[[Path], dict[str, list[float]] | None]:
    """One judge's hits on a delta_rubric run's held-out pairs, each judged in both orders (judge_eval_<tag>.json):
    "delta_rubric" (planner + verifier), "direct" (the same model, no checklist) or "scalar_rm"."""
    def read(run_dir: Path) -> dict[str, list[float]] | None:
        path = run_dir / f"judge_eval_{tag}.json"
        if not path.is_file():
            return None
        row = json.loads(path.read_text())
        if method not in row["methods"]:
            return None
        hits = [float(x) for x in row["methods"][method]["hits"]]
        # a scalar reward model scores each response alone: one hit per pair, the same in either order
        return {"pairs": hits * 2 if len(hits) == row["pairs"] else hits}
    return read


# the DeltaRubric job (conf/experiment/rubric_cpu.yaml), quiet
RUBRIC_JOB = ("+experiment=rubric_cpu", "logger.wandb.enabled=false", "logger.progress=false")

def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def metric_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


def critic_diagnostics(runs: dict[str, list[Path]]) -> list[str]:
    """Per run, before -> after, over its seeds: the greedy pick's share per shown number (a position bias is one
    number always), sampled-pick accuracy (8 picks per set at the critic's temperature), no-pick rate."""
    lines = ["| run | seeds | picked number 1..k, before -> after | sampled accuracy before -> after | "
             "no pick before -> after | critic responses with no signal (mean over steps) |", "|---|---|---|---|---|---|"]
    for run, dirs in runs.items():
        rows = {tag: [json.loads((d / f"critic_eval_{tag}.json").read_text()) for d in dirs
                      if (d / f"critic_eval_{tag}.json").is_file()] for tag in ("before", "after")}
        if not rows["before"] or not rows["after"]:
            continue

        def shares(tag):
            counts = [sum(r["picked_number"][i] for r in rows[tag] if "picked_number" in r)
                      for i in range(rows[tag][0]["k"])]
            return "/".join(f"{c / max(sum(counts), 1):.2f}" for c in counts)

        sampled = {t: _mean(r["sampled"]["accuracy"] for r in rows[t] if "sampled" in r) for t in rows}
        no_pick = {t: _mean(r["no_pick"] for r in rows[t]) for t in rows}
        flat = _mean(r["critic/zero_advantage_fraction"] for d in dirs for r in metric_rows(d)
                     if "critic/zero_advantage_fraction" in r)
        lines.append(f"| {run} | {len(rows['after'])} | {shares('before')} -> {shares('after')} | "
                     f"{sampled['before']:.3f} -> {sampled['after']:.3f} | {no_pick['before']:.3f} -> "
                     f"{no_pick['after']:.3f} | {flat:.2f} |")
    return lines


def rubric_diagnostics(runs: dict[str, list[Path]]) -> list[str]:
    """Per run and judge, before -> after, over its seeds: order consistency (the same response preferred in both
    orders; a judge that names one position always scores 0) and the parsed-verdict rate."""
    lines = ["| run | judge | seeds | order consistency before -> after | parsed before -> after |",
             "|---|---|---|---|---|"]
    for run, dirs in runs.items():
        rows = {tag: [json.loads((d / f"judge_eval_{tag}.json").read_text())["methods"] for d in dirs
                      if (d / f"judge_eval_{tag}.json").is_file()] for tag in ("before", "after")}
        for judge in ("delta_rubric", "direct"):
            b = [m[judge] for m in rows["before"] if judge in m]
            a = [m[judge] for m in rows["after"] if judge in m]
            if b and a:
                lines.append(f"| {run} | {judge} | {len(a)} | {_mean(m['order_consistency'] for m in b):.3f} -> "
                             f"{_mean(m['order_consistency'] for m in a):.3f} | {_mean(m['parsed'] for m in b):.3f} "
                             f"-> {_mean(m['parsed'] for m in a):.3f} |")
    return lines


# the CSO comparison job (conf/experiment/cso_cpu.yaml) as one run per arm, quiet, no checkpoints; its methods
CSO_JOB = ("+experiment=cso_cpu", "hydra.mode=RUN", "logger.wandb.enabled=false", "logger.progress=false",
           "save_every=0")
CSO_ARMS = {"cso": ("+method=cso",), "trajectory_dpo": ("+method=trajectory_dpo",), "grpo": ("+method=grpo",)}

COMPARISONS = {
    # CSO: stepwise_sum, four one-digit numbers added one partial sum per line; only the final answer is verified,
    # so a failure's credit sits on its first wrong line, which trajectory-level pairs and GRPO dilute over the
    # whole response. Equal rollout budget per step (sequences generated, every stage counted).
    "cso": Comparison(
        task="stepwise_sum, difficulty 2", model="SmolLM2-135M-Instruct",
        common=CSO_JOB,
        arms=CSO_ARMS,
        smoke=("model=tiny", "rollout=hf", "steps=2", "heldout.instances=8", "episodes.cso.prm=mc",
               "algorithm.prompts_per_step=4", "episodes.cso.rollout_budget=0"),
        note="credit on the first wrong step vs the whole trajectory, at the same sequences per step"),
    # The same at twice the sequences per step and six terms (difficulty 4): more failed responses to expand
    # (the first comparison mined 2 failures per step at difficulty 2), longer responses over which
    # trajectory-level credit is spread, and room in the budget for 4 expansions per step instead of 2.
    "cso_long": Comparison(
        task="stepwise_sum, difficulty 4", model="SmolLM2-135M-Instruct",
        common=(*CSO_JOB, "env.difficulty=4", "heldout.difficulty=4", "rollout.sampling.max_new_tokens=64",
                "algorithm.prompts_per_step=24", "episodes.cso.mine_prompts=8", "episodes.cso.rollout_budget=96"),
        arms=CSO_ARMS,
        smoke=("model=tiny", "rollout=hf", "steps=2", "heldout.instances=8", "episodes.cso.prm=mc",
               "algorithm.prompts_per_step=4", "episodes.cso.mine_prompts=4", "episodes.cso.rollout_budget=0"),
        note="credit on the first wrong step of six vs the whole trajectory, at 96 sequences per step"),
    # The paper's setting: a stronger expert proposes the alternative at the critical step (here the task's own
    # worked step, a scripted expert), and the policy must carry it to a verified answer. The trajectory-level
    # baseline gets the same expert, as its whole worked answer preferred over the policy's worst sample.
    "cso_oracle": Comparison(
        task="stepwise_sum, difficulty 2", model="SmolLM2-135M-Instruct",
        common=(*CSO_JOB, "episodes.cso.expert=oracle"),
        arms={"cso": ("+method=cso",), "trajectory_dpo": ("+method=trajectory_dpo", "episodes.task.chosen=reference"),
              "grpo": ("+method=grpo",)},
        smoke=("model=tiny", "rollout=hf", "steps=2", "heldout.instances=8", "episodes.cso.prm=mc",
               "algorithm.prompts_per_step=4", "episodes.cso.rollout_budget=0"),
        note="the expert's step at the critical point, carried on by the policy and verified, vs the expert's whole "
             "answer preferred over the policy's worst"),
    # cso_oracle at equal wall time instead of equal sequences per step: CSO's sequences are short continuations,
    # so its 5 steps took about 2.4 times less time than a baseline's. 12 steps of CSO against the same baseline
    # runs (the cso_oracle folder: with --keep they are read, not trained again).
    "cso_oracle_time": Comparison(
        task="stepwise_sum, difficulty 2", model="SmolLM2-135M-Instruct",
        common=(*CSO_JOB, "episodes.cso.expert=oracle"), folder="cso_oracle",
        arms={"cso_12_steps": ("+method=cso", "steps=12", "episodes.cso.prm_warmup_steps=12"),
              "trajectory_dpo": ("+method=trajectory_dpo", "episodes.task.chosen=reference"),
              "grpo": ("+method=grpo",)},
        smoke=("model=tiny", "rollout=hf", "steps=2", "heldout.instances=8", "episodes.cso.prm=mc",
               "algorithm.prompts_per_step=4", "episodes.cso.rollout_budget=0"),
        note="CSO for 12 steps against the baselines' 5: about the same wall time"),
    # Propose-then-Critic: keyword_sentence (one sentence using three given words). Right sentences differ from one
    # another, so majority vote over the proposer's 4 answers picks almost blindly; a critic that reads the
    # candidates can check for the three words. The untrained critic names the last number shown whatever stands
    # there (a position bias); shown in 4 orders (1 sample each: the same 4 critic responses per set) the same
    # number lands on different candidates, so only replies that depend on them can earn more than the others.
    # The baselines need no training: majority vote and a random pick on the same held-out candidate sets, and the
    # critic before its first step; and the critic trained on one order per set.
    "critic": Comparison(
        task="keyword_sentence, 3 words, k=4 candidate sets", model="SmolLM2-135M-Instruct",
        common=CRITIC_JOB,
        runs=CRITIC_RUNS,
        arms={"critic, 4 orders (after)": Arm("four_orders", critic_eval("after", "hits")),
              "majority vote": Arm("four_orders", critic_eval("after", "majority_hits")),
              "random pick": Arm("four_orders", critic_eval("after", "random")),
              "critic (before)": Arm("four_orders", critic_eval("before", "hits")),
              "critic, 1 order (after)": Arm("one_order", critic_eval("after", "hits"))},
        smoke=CRITIC_SMOKE,
        note="a critic that reads the candidates vs majority vote over answers that are right in different words",
        diagnose=critic_diagnostics),
    # The same runs, read as the critic's probability of a right pick (8 sampled picks per held-out set): it moves
    # long before a greedy pick flips, so its paired intervals are a fraction of the greedy ones.
    "critic_sampled": Comparison(
        task="keyword_sentence, 3 words, k=4 candidate sets", model="SmolLM2-135M-Instruct",
        common=CRITIC_JOB, folder="critic",
        runs=CRITIC_RUNS,
        arms={"critic, 4 orders, sampled (after)": Arm("four_orders", critic_sampled("after")),
              "random pick": Arm("four_orders", critic_eval("after", "random")),
              "critic, sampled (before)": Arm("four_orders", critic_sampled("before")),
              "critic, 1 order, sampled (after)": Arm("one_order", critic_sampled("after"))},
        smoke=CRITIC_SMOKE,
        note="the critic's probability of a right pick: 8 sampled picks per held-out set at its temperature"),
    # DeltaRubric: keyword_sentence pairs, a sentence with all three words against one that misses a word. Each
    # judgement is one held-out pair in one order (both orders are judged): a judge that names one position
    # whatever stands there scores 0.5. The baselines on the same judgements: the same model judging directly
    # before any training (the paper's no-rubric baseline) and after (its weights are the verifier's), a scalar
    # reward model trained on the train pairs, planner + verifier before training, and trained on one random order
    # per pair (a group per checklist).
    "rubric": Comparison(
        task="keyword_sentence pairs, both orders", model="SmolLM2-135M-Instruct",
        common=RUBRIC_JOB,
        runs={"both_orders": (), "one_order": ("episodes.delta_rubric.both_orders=false",
                                               "episodes.delta_rubric.pairs_per_step=4")},
        arms={"planner + verifier, both orders (after)": Arm("both_orders", judge_eval("after", "delta_rubric")),
              "direct judge (before)": Arm("both_orders", judge_eval("before", "direct")),
              "direct judge (after)": Arm("both_orders", judge_eval("after", "direct")),
              "scalar reward model": Arm("both_orders", judge_eval("before", "scalar_rm")),
              "planner + verifier (before)": Arm("both_orders", judge_eval("before", "delta_rubric")),
              "planner + verifier, one order (after)": Arm("one_order", judge_eval("after", "delta_rubric"))},
        smoke=("model=tiny", "rollout=hf", "steps=2", "env.name=repeat_digits", "env.difficulty=1",
               "rollout.sampling.max_new_tokens=4", "episodes.delta_rubric.train_tasks=4",
               "episodes.delta_rubric.heldout_tasks=8", "episodes.delta_rubric.planner_max_new_tokens=8",
               "episodes.delta_rubric.verifier_max_new_tokens=8", "episodes.delta_rubric.reward_model_epochs=1"),
        note="a checklist written for the pair and then run vs a verdict at a glance, on pairs a written check "
             "separates", diagnose=rubric_diagnostics),
}


@dataclass
class ArmResult:
    scores: dict[str, list[float]] = field(default_factory=dict)  # "seed/task" -> per-instance scores after
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)
    runs: frozenset = frozenset()
    diagnostics: list[str] = field(default_factory=list)  # the comparison's, on its first arm


def arm_runs(comp: Comparison) -> dict[str, tuple[Arm, tuple[str, ...]]]:
    """arm -> (what it reads, the overrides of the run it reads)."""
    out = {}
    for arm, spec in comp.arms.items():
        if isinstance(spec, Arm):
            out[arm] = (spec, comp.runs[spec.run])
        else:
            out[arm] = (Arm(arm), spec)
    return out


def train_run(name: str, comp: Comparison, run: str, overrides: tuple[str, ...], seed: int, smoke: bool,
              keep: bool = False) -> tuple[Path, float, str | None]:
    """One training run: (its folder, wall seconds, None or why it failed). keep: a finished run of the same run
    and seed (its wall time on disk, written only when it ended well) is read, not run again: a comparison adds
    seeds, or resumes where it was stopped."""
    folder = comp.folder or name
    run_dir = OUT / (f"{folder}-smoke" if smoke else folder) / run / f"seed{seed}"
    timing, log_path = run_dir.parent / f"seed{seed}.seconds", run_dir.parent / f"seed{seed}.log"
    if keep and timing.is_file():
        return run_dir, float(timing.read_text()), None
    shutil.rmtree(run_dir, ignore_errors=True)  # bench/out is the benchmark's own: a run starts afresh
    timing.unlink(missing_ok=True)
    args = [sys.executable, "-m", "cluster.train", *comp.common, *overrides, f"seed={seed}", f"run_dir={run_dir}",
            *(comp.smoke if smoke else ())]
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log_path.open("w") as log:
        rc = subprocess.call(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if rc != 0:
        return run_dir, seconds, f"rc={rc}, see {log_path}"
    timing.write_text(f"{seconds:.1f}\n")
    print(f"  {run:<16} seed {seed}  {seconds:7.1f} s", flush=True)
    return run_dir, seconds, None


def run_comparison(name: str, comp: Comparison, seeds, smoke: bool, keep: bool = False,
                   only: tuple[str, ...] = ()) -> dict[str, ArmResult]:
    """Each distinct run once per seed (only: just these runs; the others' arms report nothing); each arm's scores
    read from its run."""
    arms = arm_runs(comp)
    runs = {arm_spec.run: overrides for arm_spec, overrides in arms.values()}
    skipped = (None, 0.0, "not run (--runs)")
    done = {(run, seed): train_run(name, comp, run, overrides, seed, smoke, keep) if not only or run in only
            else skipped for seed in seeds for run, overrides in runs.items()}
    results = {}
    finished = {run: [done[(run, seed)][0] for seed in seeds if done[(run, seed)][2] is None] for run in runs}
    for arm, (spec, _) in arms.items():
        result = results[arm] = ArmResult(runs=frozenset({spec.run}))
        for seed in seeds:
            run_dir, seconds, error = done[(spec.run, seed)]
            result.seconds += seconds
            scores = None if error else spec.read(run_dir)
            if scores is None:
                result.failed.append(f"seed {seed}: {error or f'nothing to read in {run_dir}'}")
                continue
            result.scores.update({f"{seed}/{task}": values for task, values in scores.items()})
    if comp.diagnose is not None:
        next(iter(results.values())).diagnostics = comp.diagnose(finished)
    return results


def wall(m: ArmResult, b: ArmResult) -> float:
    """Both arms' wall time: a run they share counts once."""
    return m.seconds if m.runs == b.runs else m.seconds + b.seconds


def table(name: str, comp: Comparison, results: dict[str, ArmResult], seeds, smoke: bool) -> str:
    method, *baselines = comp.arms
    lines = [f"### {name}: {method} against {', '.join(baselines)}" + (" (smoke: the path only)" if smoke else ""),
             "", f"{comp.note}.", "",
             "| mechanism | baseline | task | model | seeds | held-out n | mechanism acc [95% CI] | baseline acc "
             "[95% CI] | paired difference [95% CI] | wall time (both arms) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    m = results[method]
    for base in baselines:
        b = results[base]
        keys = [k for k in m.scores if k in b.scores and len(m.scores[k]) == len(b.scores[k])]
        ms = [s for k in keys for s in m.scores[k]]
        bs = [s for k in keys for s in b.scores[k]]
        if not ms:
            lines.append(f"| {method} | {base} | {comp.task} | {comp.model} | - | 0 | - | - | - | "
                         f"{wall(m, b):.0f} s |")
            continue
        d = paired_delta(bs, ms)
        lo_m, hi_m = mean_interval(ms)
        lo_b, hi_b = mean_interval(bs)
        verdict = "" if not d["significant"] else (" (method better)" if d["delta"] > 0 else " (baseline better)")
        lines.append(f"| {method} | {base} | {comp.task} | {'tiny' if smoke else comp.model} | "
                     f"{len({k.split('/')[0] for k in keys})} | {len(ms)} | {sum(ms) / len(ms):.3f} [{lo_m:.3f}, "
                     f"{hi_m:.3f}] | {sum(bs) / len(bs):.3f} [{lo_b:.3f}, {hi_b:.3f}] | {d['delta']:+.3f} "
                     f"[{d['delta_ci'][0]:+.3f}, {d['delta_ci'][1]:+.3f}]{verdict} | {wall(m, b):.0f} s |")
    if m.diagnostics:
        lines += ["", "What explains it:", "", *m.diagnostics]
    failed = sorted({f"{next(iter(r.runs))}: {f}" for r in results.values() for f in r.failed})
    if failed:
        lines += ["", "failed runs: " + "; ".join(failed)]
    return "\n".join(lines)


def cpu_flags() -> str:
    try:
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")).split()
    except (OSError, StopIteration):
        return platform.processor() or "unknown"
    return ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "no avx2"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("comparisons", nargs="*", default=list(COMPARISONS), choices=list(COMPARISONS))
    ap.add_argument("--seeds", type=int, nargs="+", help="the run seeds (default: each comparison's)")
    ap.add_argument("--smoke", action="store_true", help="the tiny model for 2 steps on 8 held-out instances, 1 seed")
    ap.add_argument("--runs", nargs="+", default=(), help="train only these runs of the comparison")
    ap.add_argument("--keep", action="store_true",
                    help="read finished runs of the same arm and seed instead of running them again")
    args = ap.parse_args(argv)
    header = (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {cpu_count()} cores, "
              f"CPU flags: {cpu_flags()}; command: bench/effects.py {' '.join(argv or sys.argv[1:])}")
    print(header, flush=True)
    tables = []
    for name in args.comparisons:
        comp = COMPARISONS[name]
        seeds = tuple(args.seeds or ((comp.seeds[0],) if args.smoke else comp.seeds))
        results = run_comparison(name, comp, seeds, args.smoke, args.keep, tuple(args.runs))
        tables.append(table(name, comp, results, seeds, args.smoke))
        print("\n" + tables[-1] + "\n", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / ("effects_smoke.md" if args.smoke else "effects.md")).write_text(header + "\n\n" + "\n\n".join(tables) + "\n")
    return 0


def cpu_count() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
