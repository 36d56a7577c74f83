"""Rollout workers sharing the prompts of a step; weights pushed to all of them.

A worker that dies is restarted on its placement bundle, given the current
weights, and its prompts re-issued with the same seed: none is lost or
counted twice, and the samples equal those of an uninterrupted run.
"""
from __future__ import annotations

import ray

from actors.rollout_worker import RolloutWorker
from cluster.placement import bundle, on_bundle, reserve

DEAD = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError)


class VersionMismatch(RuntimeError):
    pass


class RolloutPool:
    def __init__(self, cfg, model_path: str, strategy: str):
        rc = self.rc = cfg.rollout
        self.model_path, self.dtype = model_path, cfg.model.dtype
        self.pg = reserve("rollout", [bundle(rc.cpus_per_worker, rc.gpus_per_worker)] * rc.num_workers, strategy)
        self.workers = [self._start(i) for i in range(rc.num_workers)]
        ray.get([w.ready.remote() for w in self.workers])
        self.version, self.weights_ref, self.restarts = 0, None, 0

    def _start(self, i: int):
        return RolloutWorker.options(**on_bundle(self.pg, i), max_restarts=0).remote(
            i, self.model_path, self.rc.backend, self.dtype, self.rc.threads)

    def _restart(self, i: int) -> None:
        try:
            ray.kill(self.workers[i])
        except Exception:  # already gone
            pass
        self.workers[i] = self._start(i)
        if self.weights_ref is not None:  # the current policy, not the checkpoint it started from
            ray.get(self.workers[i].update_weights.remote(self.weights_ref))
        self.restarts += 1

    def generate(self, prompts: list[list[int]], sampling, seed: int) -> dict:
        """Split prompts over workers; every sample must come from the current version."""
        k = len(self.workers)
        chunks = [prompts[i * len(prompts) // k:(i + 1) * len(prompts) // k] for i in range(k)]
        calls = {i: self.workers[i].generate.remote(c, sampling, seed * 1000 + i) for i, c in enumerate(chunks) if c}
        outs = []
        for i, ref in calls.items():
            try:
                outs.append(ray.get(ref))
            except DEAD:  # restart and re-issue the same prompts with the same seed
                self._restart(i)
                outs.append(ray.get(self.workers[i].generate.remote(chunks[i], sampling, seed * 1000 + i)))
        stale = [o["version"] for o in outs if o["version"] != self.version]
        if stale:
            raise VersionMismatch(f"rollout workers answered with versions {stale}, expected {self.version}")
        return {"samples": [g for o in outs for g in o["samples"]], "tokens": sum(o["tokens"] for o in outs),
                "seconds": max(o["seconds"] for o in outs), "restarts": self.restarts}

    def push_weights(self, weights_ref, version: int) -> dict:
        self.weights_ref = weights_ref
        results = []
        for i in range(len(self.workers)):
            try:
                results.append(ray.get(self.workers[i].update_weights.remote(weights_ref)))
            except DEAD:
                self._restart(i)  # the restart loads weights_ref itself
                results.append({"version": version, "seconds": 0.0, "bytes": results[0]["bytes"] if results else 0})
        if any(r["version"] != version for r in results):
            raise VersionMismatch(f"weight sync answered {[r['version'] for r in results]}, expected {version}")
        self.version = version
        return {"bytes": max(r["bytes"] for r in results), "load_seconds": max(r["seconds"] for r in results)}
