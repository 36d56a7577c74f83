"""EnvExecutor actors seen as one fleet: instances and scores for the driver."""
from __future__ import annotations

from collections import Counter

import ray

from actors.env_executor import EnvExecutor
from cluster.placement import bundle, on_bundle, reserve
from envs.registry import resolve_environment


class EnvFleet:
    def __init__(self, cfg, strategy: str):
        ec = cfg.env
        self.name, source = resolve_environment(ec.name)
        self.pg = reserve("executor", [bundle(ec.cpus_per_executor, 0)] * ec.num_executors, strategy)
        self.executors = [
            EnvExecutor.options(**on_bundle(self.pg, i)).remote(i, ec.workers_per_executor, ec.timeout_s)
            for i in range(ec.num_executors)
        ]
        ray.get([e.load.remote(self.name, source) for e in self.executors])
        self.verdicts: Counter = Counter()

    def sample(self, seeds: list[int], difficulty: int) -> list[dict]:
        return ray.get(self.executors[0].sample.remote(self.name, seeds, difficulty))

    def score(self, items: list[dict]) -> tuple[list[float], dict]:
        k = len(self.executors)
        chunks = [items[i * len(items) // k:(i + 1) * len(items) // k] for i in range(k)]
        outs = ray.get([e.score.remote(self.name, c) for e, c in zip(self.executors, chunks) if c])
        results = [r for o in outs for r in o["results"]]
        step_verdicts = Counter(r["verdict"] for r in results)
        self.verdicts.update(step_verdicts)
        return [r["score"] for r in results], {f"env/verdict_{v}": n for v, n in step_verdicts.items()}
