"""EnvExecutor: a Ray actor that owns a pool of environment worker processes.

Environment code never runs in this actor's process: only JSON goes to and
comes back from the pool's workers.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict

import ray

from envs.pool import SubprocessPool


@ray.remote
class EnvExecutor:
    def __init__(self, index: int, workers: int, timeout_s: float):
        self.index = index
        self.pool = SubprocessPool(size=workers, timeout_s=timeout_s)

    def ready(self) -> dict:
        return {"index": self.index, "pid": os.getpid()}

    def load(self, env_id: str, source: str) -> None:
        self.pool.load(env_id, source)

    def sample(self, env_id: str, seeds: list[int], difficulty: int) -> list[dict]:
        return self.pool.sample(env_id, seeds, difficulty)

    def score(self, env_id: str, items: list[dict]) -> dict:
        start = time.perf_counter()
        results = self.pool.score(env_id, items)
        return {"results": [asdict(r) for r in results], "seconds": time.perf_counter() - start}

    def stats(self) -> dict:
        return self.pool.stats()

    def close(self) -> None:
        self.pool.close()
