"""EnvExecutor: a Ray actor that owns one sandbox pool of environment workers.

Environment code never runs in this actor's process: only JSON goes to and
comes back from the sandboxed workers. The actor is threaded so several
calls share the pool's workers at once.
"""
from __future__ import annotations

import os
import socket
import time
from collections import Counter
from dataclasses import asdict

import ray

from envs.sandbox.limits import Limits

from envs.errors import SandboxUnavailable

from envs.sandbox.backends import make_pool


@ray.remote
class EnvExecutor:
    def __init__(self, index: int, workers: int, backend: str, limits: dict, allow_unisolated: bool = False):
        self.index = index
        try:  # no sandbox on this node: say so from ready() in one line, not as an actor-creation traceback
            self.pool, self.startup_error = make_pool(backend, workers, Limits(**limits), allow_unisolated), None
        except SandboxUnavailable as e:
            self.pool, self.startup_error = None, f"environment executor {index} on {socket.gethostname()}: {e}"
        self.executions = 0
        self.busy_s = 0.0
        self.verdicts: Counter = Counter()

    def ready(self) -> dict:
        return {"index": self.index, "pid": os.getpid(), "error": self.startup_error,
                "isolated": self.pool is not None and self.pool.isolated}

    def load(self, env_id: str, source: str) -> dict:
        return self.pool.load(env_id, source)

    def unload(self, env_ids: list[str]) -> int:
        """Drop these environments from the pool and its workers (unknown ids are a no-op); returns how many
        environments stay loaded."""
        for env_id in env_ids:
            self.pool.unload(env_id)
        return self.pool.stats()["loaded_envs"]

    def loaded(self) -> dict:
        """Environment ids loaded in the pool and in each live worker process (SubprocessPool.loaded)."""
        return self.pool.loaded()

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
        """Admission gates L1-L3 (envs.gates) for a candidate source, run against this executor's sandboxes.
        A candidate that fails a gate is unloaded at once; one that passes stays loaded as ``env_id``
        (the caller unloads it when it leaves play)."""
        from envs.gates import check_environment

        results = [asdict(r) for r in check_environment(source, self.pool, check_cfg, env_id)]
        if not all(r["passed"] for r in results):
            self.pool.unload(env_id)
        return results

    def stats(self) -> dict:
        """Executions and busy time of this actor, plus the pool's counts (calls, verdicts, restarts,
        ``loaded_envs``: environments loaded)."""
        return {"executions": self.executions, "busy_s": self.busy_s, "verdicts": dict(self.verdicts),
                **self.pool.stats()}

    def worker_pids(self) -> list[int | None]:
        return self.pool.pids()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
