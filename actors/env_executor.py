"""EnvExecutor: a Ray actor that owns one sandbox pool of environment workers.

Environment code never runs in this actor's process: only JSON goes to and
comes back from the sandboxed workers. The actor is threaded so several
calls share the pool's workers at once.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict

import ray

from envs.sandbox import Limits, make_pool


@ray.remote
class EnvExecutor:
    def __init__(self, index: int, workers: int, backend: str, limits: dict):
        self.index = index
        self.pool = make_pool(backend, workers, Limits(**limits))
        self.executions = 0
        self.busy_s = 0.0
        self.verdicts: Counter = Counter()

    def ready(self) -> dict:
        return {"index": self.index, "pid": os.getpid(), "isolated": self.pool.isolated}

    def load(self, env_id: str, source: str) -> dict:
        return self.pool.load(env_id, source)

    def sample(self, env_id: str, seeds: list[int], difficulty: int) -> list[dict]:
        return self.pool.sample(env_id, seeds, difficulty)

    def score(self, env_id: str, items: list[dict]) -> list[dict]:
        start = time.perf_counter()
        results = [asdict(r) for r in self.pool.score(env_id, items)]
        self.busy_s += time.perf_counter() - start
        self.executions += len(results)
        self.verdicts.update(r["verdict"] for r in results)
        return results

    def check(self, env_id: str, source: str, check_cfg) -> list[dict]:
        """Admission gates L1-L3 (envs.gates) for a candidate source, run against this executor's sandboxes."""
        from envs.gates import check_environment

        return [asdict(r) for r in check_environment(source, self.pool, check_cfg, env_id)]

    def stats(self) -> dict:
        return {"executions": self.executions, "busy_s": self.busy_s, "verdicts": dict(self.verdicts),
                **self.pool.stats()}

    def worker_pids(self) -> list[int | None]:
        return self.pool.pids()

    def close(self) -> None:
        self.pool.close()
