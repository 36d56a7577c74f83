"""Rollout workers sharing the prompts of a step; weights pushed to all of them."""
from __future__ import annotations

import ray

from actors.rollout_worker import RolloutWorker
from cluster.placement import bundle, on_bundle, reserve


class VersionMismatch(RuntimeError):
    pass


class RolloutPool:
    def __init__(self, cfg, model_path: str, strategy: str):
        rc = cfg.rollout
        self.pg = reserve("rollout", [bundle(rc.cpus_per_worker, rc.gpus_per_worker)] * rc.num_workers, strategy)
        self.workers = [
            RolloutWorker.options(**on_bundle(self.pg, i)).remote(i, model_path, rc.backend, cfg.model.dtype, rc.threads)
            for i in range(rc.num_workers)
        ]
        ray.get([w.ready.remote() for w in self.workers])
        self.version = 0

    def generate(self, prompts: list[list[int]], sampling, seed: int) -> dict:
        """Split prompts over workers; every sample must come from the current version."""
        k = len(self.workers)
        chunks = [prompts[i * len(prompts) // k:(i + 1) * len(prompts) // k] for i in range(k)]
        calls = [(w, c) for w, c in zip(self.workers, chunks) if c]
        outs = ray.get([w.generate.remote(c, sampling, seed * 1000 + i) for i, (w, c) in enumerate(calls)])
        stale = [o["version"] for o in outs if o["version"] != self.version]
        if stale:
            raise VersionMismatch(f"rollout workers answered with versions {stale}, expected {self.version}")
        return {"samples": [g for o in outs for g in o["samples"]], "tokens": sum(o["tokens"] for o in outs),
                "seconds": max(o["seconds"] for o in outs)}

    def push_weights(self, weights_ref, version: int) -> dict:
        results = ray.get([w.update_weights.remote(weights_ref) for w in self.workers])
        if any(r["version"] != version for r in results):
            raise VersionMismatch(f"weight sync answered {[r['version'] for r in results]}, expected {version}")
        self.version = version
        return {"bytes": results[0]["bytes"], "load_seconds": max(r["seconds"] for r in results)}
