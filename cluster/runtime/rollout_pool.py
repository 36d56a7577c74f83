"""Rollout workers sharing the prompts of a step; weights pushed to all of them.

A worker that dies is restarted on its placement bundle, given the current
weights, and its prompts re-issued with the same seed: none is lost or
counted twice, and the samples equal those of an uninterrupted run.

Weight sync (`sync`) uses one of two transports (rollout.weight_sync):
object_store, where learner rank 0 packs one flat buffer that every worker
reads, or broadcast, where learner rank 0 and the workers form a process group
(NCCL on GPU, gloo on CPU) and the buffer goes out in one broadcast. A
broadcast group has fixed members, so replacing a worker rebuilds it before
the next sync. LoRA runs on vLLM send only the adapter.
"""
from __future__ import annotations

from dataclasses import dataclass

import ray

from actors.rollout_worker import RolloutWorker
from cluster.config.seeds import worker_sampling
from cluster.runtime.placement import bundle, compute_share, on_bundle, reserve
from cluster.runtime.replace import DEAD, Replacements


class VersionMismatch(RuntimeError):
    pass


@dataclass
class Pending:
    """Generation calls in flight: one per worker with prompts, and what re-issuing them needs."""
    calls: dict[int, ray.ObjectRef]
    chunks: list[list[list[int]]]
    sampling: object
    seed: int
    version: int  # the weights the workers hold when the calls were made


class RolloutPool:
    def __init__(self, cfg, model_path: str, strategy: str, name: str = "rollout", wait: bool = True,
                 hosts: list | None = None):
        """wait=False: the workers start loading and the constructor returns; wait_ready() waits for them
        (a caller starting other actors meanwhile). hosts: engines already running inside other actors (a
        HybridWorker: learner rank 0 of the policy) instead of workers of the pool's own; they cannot be
        restarted apart from their learner."""
        rc = self.rc = cfg.rollout
        self.model_path, self.dtype = model_path, cfg.model.dtype
        self.lora = cfg.learner.lora.rank
        self.adapter_only = bool(self.lora and rc.backend == "vllm" and rc.lora_adapter_sync)
        self.transport = rc.weight_sync if rc.weight_sync != "auto" else \
            ("broadcast" if rc.gpus_per_worker > 0 and not rc.colocate else "object_store")
        self.version, self.weights_ref = 0, None
        self.group_ready, self.learners = False, None
        self.share = compute_share(cfg, "rollout")
        self.hosted = hosts is not None
        if self.hosted:
            self.transport, self.pg = "object_store", None
        else:
            self.pg = reserve(name, [bundle(rc.cpus_per_worker, rc.gpus_per_worker)] * rc.num_workers, strategy)
        self.replacements = Replacements(self._start)
        self.workers = list(hosts) if self.hosted else [self._start(i) for i in range(rc.num_workers)]
        self._loading = [w.ready.remote() for w in self.workers]
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        if self._loading:
            ray.get(self._loading)
            self._loading = []

    def _start(self, i: int):
        if self.hosted:
            raise RuntimeError("the rollout engine hosted in learner rank 0 (rollout.placement=learner) died with "
                               "its learner: the run cannot go on without that rank; resume from the last "
                               "checkpoint (or use rollout.placement=workers for restartable rollout workers)")
        return RolloutWorker.options(**on_bundle(self.pg, i), max_restarts=0).remote(
            i, self.model_path, self.rc.backend, self.dtype, self.rc.threads,
            self.lora if self.adapter_only else 0, self.rc.colocate, self.rc.max_model_len, self.share,
            self.rc.cpu_kv_cache_gib)

    @property
    def restarts(self) -> int:
        return self.replacements.count

    def _restart(self, i: int) -> None:
        self.replacements.replace(self.workers, i, then=self._load_current)
        self.group_ready = False  # a broadcast group is rebuilt with the new member

    def _load_current(self, worker) -> None:
        """A new worker gets the current policy, not the checkpoint it started from."""
        if self.transport == "broadcast" and self.version > 0:  # the last broadcast version, from the learners
            self.weights_ref = self.learners.weights_ref(self.version, self.adapter_only)
        if self.weights_ref is not None:
            ray.get(worker.update_weights.remote(self.weights_ref))

    def generate(self, prompts: list[list[int]], sampling, seed: int) -> dict:
        """Split prompts over workers; every sample must come from the current version."""
        return self.collect(self.submit(prompts, sampling, seed))

    def submit(self, prompts: list[list[int]], sampling, seed: int) -> Pending:
        """Start generating and return at once. A worker runs its calls in order, so the weights it samples
        with are the ones it holds now: a later sync waits until these samples are drawn."""
        k = len(self.workers)
        chunks = [prompts[i * len(prompts) // k:(i + 1) * len(prompts) // k] for i in range(k)]
        calls = {i: self.workers[i].generate.remote(c, sampling, worker_sampling(seed, i))
                 for i, c in enumerate(chunks) if c}
        return Pending(calls, chunks, sampling, seed, self.version)

    def collect(self, pending: Pending) -> dict:
        """The samples of a submit(), from the version that was current when it was submitted."""
        outs = []
        for i, ref in pending.calls.items():
            try:
                outs.append(ray.get(ref))
            except DEAD:  # restart and re-issue the same prompts with the same seed
                if self.version != pending.version:  # its weights are gone: the restarted worker has newer ones
                    raise VersionMismatch(f"rollout worker {i} died while generating with version "
                                          f"{pending.version}; the pool is at {self.version}") from None
                self._restart(i)
                outs.append(ray.get(self.workers[i].generate.remote(pending.chunks[i], pending.sampling,
                                                                    worker_sampling(pending.seed, i))))
        stale = [o["version"] for o in outs if o["version"] != pending.version]
        if stale:
            raise VersionMismatch(f"rollout workers answered with versions {stale}, expected {pending.version}")
        return {"samples": [g for o in outs for g in o["samples"]], "tokens": sum(o["tokens"] for o in outs),
                "seconds": max((o["seconds"] for o in outs), default=0.0), "restarts": self.restarts, "version": pending.version}

    # -- weight sync -------------------------------------------------------------
    def sync(self, learners, version: int) -> dict:
        """Bring every worker to `version` from the learner group; returns bytes and seconds."""
        if self.transport == "broadcast":
            return self._broadcast(learners, version)
        return self.push_weights(learners.weights_ref(version, self.adapter_only), version)

    def push_weights(self, weights_ref, version: int) -> dict:
        self.weights_ref = weights_ref
        results = []
        for i in range(len(self.workers)):
            try:
                results.append(ray.get(self.workers[i].update_weights.remote(weights_ref)))
            except DEAD:
                self._restart(i)  # the restart loads weights_ref itself
                results.append({"version": version, "seconds": 0.0, "bytes": results[0]["bytes"] if results else 0})
        return self._done(results, version)

    def _broadcast(self, learners, version: int) -> dict:
        self.learners = learners
        for i, w in enumerate(self.workers):  # replace dead members before the group is used
            try:
                ray.get(w.ready.remote())
            except DEAD:
                self._restart(i)
        if not self.group_ready:
            self._build_group(learners)
        receives = [w.receive_weights.remote(version) for w in self.workers]
        learners.broadcast_weights(version, self.adapter_only)
        return self._done(ray.get(receives), version)

    def _build_group(self, learners) -> None:
        """A new broadcast group: learner rank 0 hosts it, workers are ranks 1..N."""
        manifest = learners.sync_manifest(self.adapter_only)
        host, port = learners.free_port()
        backend = "nccl" if self.rc.gpus_per_worker > 0 else "gloo"
        world = len(self.workers) + 1
        joins = [w.join_sync_group.remote(host, port, i + 1, world, backend, manifest)
                 for i, w in enumerate(self.workers)]
        learners.join_sync_group(host, port, world, backend)
        ray.get(joins)
        self.group_ready = True

    def _done(self, results: list[dict], version: int) -> dict:
        if any(r["version"] != version for r in results):
            raise VersionMismatch(f"weight sync answered {[r['version'] for r in results]}, expected {version}")
        self.version = version
        return {"bytes": max(r["bytes"] for r in results), "load_seconds": max(r["seconds"] for r in results),
                "transport": self.transport}

    # -- colocated mode: engines free the GPU while the learner trains ------------
    def sleep(self) -> None:
        if self.rc.colocate:
            ray.get([w.sleep.remote() for w in self.workers])

    def wake_up(self) -> None:
        if self.rc.colocate:
            ray.get([w.wake_up.remote() for w in self.workers])
