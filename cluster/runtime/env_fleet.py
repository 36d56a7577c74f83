"""EnvExecutor actors seen as one fleet, with admission control and replacement of dead actors.

At most `env.max_in_flight` items are outstanding per executor, so a burst of
slow environments queues here instead of piling up inside the actors. An
executor that dies is replaced (same placement bundle, same environments
loaded) and its chunk retried; a chunk that keeps failing is reported item by
item with verdict "crashed". Nothing is dropped.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict

import ray

from actors.env_executor import EnvExecutor
from cluster.runtime.placement import bundle, on_bundle, reserve
from cluster.runtime.replace import DEAD, Replacements
from envs.registry import resolve_environment
from envs.sandbox.limits import Limits
from envs.errors import SandboxUnavailable

RETRIES = 2


class EnvFleet:
    def __init__(self, cfg, strategy: str):
        ec = self.ec = cfg.env
        self.name, source = resolve_environment(ec.name, ec.kind, ec.rg_config)
        self.sources = {self.name: source}
        self.limits = asdict(Limits(**{k: getattr(ec.sandbox, k) for k in Limits.__dataclass_fields__}))
        self.pg = reserve("executor", [bundle(ec.cpus_per_executor, 0, ec.executor_resource)] * ec.num_executors, strategy)
        try:
            self.executors = [self._start(i) for i in range(ec.num_executors)]
        except SandboxUnavailable:
            ray.util.remove_placement_group(self.pg)  # nothing is left reserved by a fleet that cannot start
            raise
        self.replacements = Replacements(self._start)
        self.verdicts: Counter = Counter()

    def _start(self, i: int):
        actor = EnvExecutor.options(**on_bundle(self.pg, i), max_concurrency=4, max_restarts=0).remote(
            i, self.ec.workers_per_executor, self.ec.sandbox.backend, self.limits, self.ec.sandbox.allow_unisolated)
        if error := ray.get(actor.ready.remote())["error"]:  # e.g. a node without bubblewrap
            ray.kill(actor)
            raise SandboxUnavailable(error)
        ray.get([actor.load.remote(env_id, src) for env_id, src in self.sources.items()])
        return actor

    def _replace(self, i: int) -> None:
        self.replacements.replace(self.executors, i)

    def _call(self, i: int, method: str, *args):
        """Call an executor, replacing it and retrying when the actor dies."""
        return self.replacements.call(self.executors, i, method, *args, retries=RETRIES)

    # -- several environments (self-play's library) ------------------------------
    def load(self, env_id: str, source: str) -> None:
        """Load an environment on every executor (and on any replacement later)."""
        ray.get([e.load.remote(env_id, source) for e in self.executors])
        self.sources[env_id] = source

    def unload(self, env_ids: str | list[str]) -> None:
        """Drop environments from every executor's sandboxes, and from what a replacement loads. An executor
        found dead is left for the next call to replace (a replacement starts without them)."""
        env_ids = [env_ids] if isinstance(env_ids, str) else list(env_ids)
        if not env_ids:
            return
        for env_id in env_ids:
            self.sources.pop(env_id, None)
        refs = [e.unload.remote(env_ids) for e in self.executors]
        for ref in refs:
            try:
                ray.get(ref)
            except DEAD:
                pass  # dead: holds nothing any more

    def loaded_counts(self) -> list[int | None]:
        """Environments loaded on each executor (None for one that is dead)."""
        return [None if s is None else s["loaded_envs"] for s in self._each("stats")]

    def loaded(self) -> list[dict | None]:
        """Per executor, the environment ids loaded in its pool and in each live worker (None: dead)."""
        return self._each("loaded")

    def _each(self, method: str) -> list:
        refs = [getattr(e, method).remote() for e in self.executors]
        out = []
        for ref in refs:
            try:
                out.append(ray.get(ref))
            except DEAD:
                out.append(None)
        return out

    def check(self, candidates: list[tuple[str, str]], check_cfg) -> list[list[dict]]:
        """Admission gates L1-L3 for (env_id, source) candidates, spread over the executors.
        Returns each candidate's gate results (dicts), in order; a candidate that passes stays loaded on
        the executor that checked it only (call `load` to admit it everywhere, `unload` to drop it), one that
        fails is unloaded there."""
        k = len(self.executors)
        refs = [self.executors[j % k].check.remote(env_id, source, check_cfg)
                for j, (env_id, source) in enumerate(candidates)]
        out = []
        for j, ref in enumerate(refs):
            try:
                out.append(ray.get(ref))
            except DEAD as e:
                self._replace(j % k)
                out.append([{"gate": "L1", "passed": False, "reason": f"the executor checking it died: {e}",
                             "details": {}}])
        return out

    def sample(self, seeds: list[int], difficulty: int, env_id: str | None = None) -> list[dict]:
        return self._call(0, "sample", env_id or self.name, seeds, difficulty)

    def score(self, items: list[dict], env_id: str | None = None) -> tuple[list[float], dict]:
        """Scores in item order, plus metrics: verdict counts, executions/s, queue depth.
        Each item is scored by `env_id`, or by its own "env" key (items of several environments)."""
        start = time.perf_counter()
        k, cap = len(self.executors), max(1, self.ec.max_in_flight)
        by_env: dict[str, list[int]] = {}
        for n, item in enumerate(items):
            by_env.setdefault(item.get("env") or env_id or self.name, []).append(n)
        chunks = [(env, idx[c:c + cap]) for env, idx in by_env.items() for c in range(0, len(idx), cap)]
        chunks = [(env, idx, [{"data": items[n]["data"], "response": items[n]["response"]} for n in idx])
                  for env, idx in chunks]
        results: list[dict | None] = [None] * len(items)
        pending, queue_depth = {}, 0
        while chunks or pending:
            busy = {i for i, *_ in pending.values()}
            for i in range(k):  # admission: one chunk of <= cap items in flight per executor
                if i not in busy and chunks:
                    env, idx, chunk = chunks.pop(0)
                    pending[self.executors[i].score.remote(env, chunk)] = (i, env, idx, chunk)
            queue_depth = max(queue_depth, sum(len(idx) for _, idx, _ in chunks))
            done, _ = ray.wait(list(pending), num_returns=1)
            i, env, idx, chunk = pending.pop(done[0])
            try:
                out = ray.get(done[0])
            except DEAD as e:
                out = self._retry(i, env, chunk, e)
            for n, r in zip(idx, out):
                results[n] = r
        verdicts = Counter(r["verdict"] for r in results)
        self.verdicts.update(verdicts)
        seconds = time.perf_counter() - start
        metrics = {f"env/verdict_{v}": n for v, n in verdicts.items()}
        metrics.update({"env/executions_per_s": len(items) / max(seconds, 1e-9), "env/queue_depth": queue_depth,
                        "env/executors_replaced": self.replacements.count})
        return [r["score"] for r in results], metrics

    def _retry(self, i: int, env: str, chunk: list[dict], error: Exception) -> list[dict]:
        try:
            self._replace(i)
            return self._call(i, "score", env, chunk)
        except Exception as e:  # reported, never lost
            why = f"executor {i} died and its replacement failed: {e or error}"
            return [{"score": 0.0, "verdict": "crashed", "error": why} for _ in chunk]

    def stats(self) -> list[dict]:
        return ray.get([e.stats.remote() for e in self.executors])
