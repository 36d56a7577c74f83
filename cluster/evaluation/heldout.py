"""Held-out accuracy of the solver role before the first step and after the last (`heldout.*`).

    for each task in heldout.tasks:                      Reasoning Gym datasets nobody trains on here, or
        instances <- seeds far above training's          the trained family at seeds training never draws
        greedy    <- one response each, temperature 0    -> accuracy with its 95% interval
        sampled   <- heldout.samples responses each      -> pass@k with its interval
    run_dir/eval_<tag>.json                              the rows (per-instance scores for paired deltas)

The policy generates through its rollout pool and the environment fleet scores in the sandbox, as in
training; the tasks are loaded into the fleet only while they are measured.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from cluster.config.seeds import fewshot_instances
from cluster.evaluation.scoring import eval_seeds, resolve_tasks, score_row


def fewshot_examples(fleet, env_id: str, difficulty: int, k: int) -> list[tuple[str, str]]:
    """k (prompt, reference answer) pairs of `env_id` from the fleet, at the few-shot seeds (env.fewshot)."""
    instances = fleet.sample(fewshot_instances(k), difficulty, env_id=env_id)
    return [(i["prompt"], i["reference"]) for i in instances]

TASK_PREFIX = "heldout_"


def heldout_sources(cfg) -> list[tuple[str, str]]:
    """(task name, environment source) of every heldout.tasks entry: Reasoning Gym datasets (the one that
    env.name names gets env.rg_config too), builtin and seed environments, and the run's own env.name when it is a
    file environment. Unknown names raise UnknownEnvironmentError."""
    out = []
    for task in cfg.heldout.tasks:
        out += [(env_id, source) for env_id, _, source in resolve_tasks([task], heldout_kind(cfg, task), cfg.env)]
    return out


def heldout_kind(cfg, task: str) -> str:
    """file: a builtin or seed environment, or the run's own file environment; else reasoning_gym."""
    from envs.registry import builtin_environments, seed_environments

    files = {*builtin_environments(), *seed_environments("all")} | ({cfg.env.name} if cfg.env.kind == "file" else set())
    return "file" if task in files else "reasoning_gym"


def measure(cfg, fleet, policy, tag: str, run_dir: Path, log=print) -> list[dict]:
    """Held-out rows of `policy` on heldout.tasks, written to run_dir/eval_<tag>.json."""
    h = cfg.heldout
    seeds = eval_seeds(h.seed, h.instances)
    greedy = replace(policy.sampling, n=1, temperature=0.0, cuts_fraction=0.0,
                     max_new_tokens=h.max_new_tokens or policy.sampling.max_new_tokens)
    rows = []
    for task, source in heldout_sources(cfg):
        env_id = TASK_PREFIX + task
        fleet.load(env_id, source)
        try:
            instances = fleet.sample(seeds, h.difficulty, env_id=env_id)
            shots = fewshot_examples(fleet, env_id, h.difficulty, cfg.env.fewshot) if cfg.env.fewshot else []
            prompts = [policy.encode(i["prompt"], shots) for i in instances]
            out = policy.generate(prompts, greedy, seed=h.seed)
            scored, _ = fleet.score([{"data": i["data"], "response": g[0].text}
                                     for i, g in zip(instances, out["samples"])], env_id=env_id)
            sampled = None
            if h.samples:
                many = replace(greedy, n=h.samples, temperature=h.temperature)
                groups = policy.generate(prompts, many, seed=h.seed + 1)["samples"]
                flat, _ = fleet.score([{"data": i["data"], "response": s.text}
                                       for i, g in zip(instances, groups) for s in g], env_id=env_id)
                sampled = [flat[j * h.samples:(j + 1) * h.samples] for j in range(len(instances))]
        finally:
            fleet.unload(env_id)  # loaded for this measurement only
        lengths = [len(g[0].response_ids) for g in out["samples"]]
        row = score_row(task, scored, [], lengths, h.difficulty, h.seed, sampled, h.k)
        rows.append(row)
        if log:
            passk = f", pass@{h.k} {row['pass_at_k']:.3f}" if sampled else ""
            log(f"evoforge: held-out {tag}: {task} accuracy {row['accuracy']:.3f} "
                f"[{row['accuracy_ci'][0]:.3f}, {row['accuracy_ci'][1]:.3f}]{passk} ({len(scored)} instances)")
    (Path(run_dir) / f"eval_{tag}.json").write_text(json.dumps(rows, indent=2))
    return rows
