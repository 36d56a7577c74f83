"""A thread-safe pool of environment worker subprocesses (see envs.worker).

Items go one per request so a hang or crash is pinned on exactly the item
that caused it: that worker is killed (and restarted on next use) and the
item reported with verdict "timeout" or "crashed" and score 0, never dropped.
The launch command ``argv`` is one overridable list (e.g. a sandbox wrapper).
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from envs.client import WorkerClient, WorkerFailed
from envs.sandbox.limits import VERDICTS

PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


class PoolError(RuntimeError):
    """A pool operation (start, load, sample) failed."""


@dataclass(frozen=True)
class ScoreResult:
    score: float
    verdict: str  # one of VERDICTS
    error: str | None = None


class SubprocessPool:
    """``size`` workers launched with ``argv`` (default: ``python -m envs.worker``).

    ``env`` replaces the children's environment (default: os.environ); the
    project root is always prepended to PYTHONPATH and used as cwd.
    """

    def __init__(self, size: int, argv: list[str] | None = None, timeout_s: float = 10.0,
                 env: dict | None = None, init_requests: list[dict] | None = None, isolated: bool = False,
                 client_factory: Callable[[], WorkerClient] | None = None, on_close: Callable[[], None] | None = None):
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size, self.timeout_s = size, timeout_s
        self.argv = list(argv) if argv else [sys.executable, "-m", "envs.worker"]
        child_env = dict(os.environ if env is None else env)
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (PROJECT_ROOT, child_env.get("PYTHONPATH")) if p)
        self.isolated = isolated  # False: environment code runs as a plain process (no sandbox)
        self._on_close = on_close  # e.g. the docker backend removes its containers
        self._workers = [client_factory() if client_factory is not None  # e.g. a container instead of a process
                         else WorkerClient(self.argv, PROJECT_ROOT, child_env, init_requests) for _ in range(size)]
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        for w in self._workers:
            self._idle.put(w)
        self._sources: dict[str, str] = {}
        self._lock = threading.Lock()  # guards _sources and _stats
        self._all_lock = threading.Lock()  # see _on_all
        self._stats: Counter = Counter()
        self._closed = False
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="envpool")
        try:  # start all workers now so a broken launch command fails loudly here
            self._on_all(lambda w: w.call({"op": "ping"}, max(timeout_s, 10.0)))
        except PoolError:
            self.close()
            raise

    def _on_all(self, fn) -> list:
        """Run ``fn(worker)`` on every worker in parallel; raise PoolError."""
        if self._closed:
            raise PoolError("pool is closed")
        outcomes: list = [None] * self.size

        def task(i, w):
            try:
                outcomes[i] = fn(w)
            except WorkerFailed as f:
                outcomes[i] = f
        # One whole-pool operation at a time: two each holding half the
        # workers would deadlock.
        with self._all_lock:
            workers = [self._idle.get() for _ in range(self.size)]
            try:
                threads = [threading.Thread(target=task, args=(i, w)) for i, w in enumerate(workers)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            finally:
                for w in workers:
                    self._idle.put(w)
        failed = [o for o in outcomes if isinstance(o, WorkerFailed)]
        if failed:
            raise PoolError(f"{len(failed)}/{self.size} workers failed: {failed[0]}")
        return outcomes

    def _map(self, env_id: str, items: list, build) -> list:
        """One request ``build(item)`` per item on any idle worker; each
        outcome is a response dict or a WorkerFailed."""
        if self._closed:
            raise PoolError("pool is closed")
        with self._lock:
            source = self._sources.get(env_id)
        if source is None:
            raise PoolError(f"environment {env_id!r} is not loaded")

        def one(item):
            w = self._idle.get()
            try:
                with self._lock:  # looked up again: unload() meanwhile must not be undone by a reload here
                    current = self._sources.get(env_id)
                if current is None:
                    return WorkerFailed("error", f"environment {env_id!r} was unloaded")
                # A restarted worker has nothing loaded; this reloads it.
                w.ensure_loaded(env_id, current, self.timeout_s)
                resp = w.call({"env_id": env_id, **build(item)}, self.timeout_s)
                return resp if resp["ok"] else WorkerFailed(resp.get("verdict", "error"), resp["error"])
            except WorkerFailed as f:
                return f
            finally:
                self._idle.put(w)
        return list(self._executor.map(one, items))

    def load(self, env_id: str, source: str) -> dict:
        """Load ``source`` as ``env_id`` on every worker; return its info
        {"name", "description", "answer_format"}."""
        with self._lock:
            self._stats["calls_load"] += 1
        try:
            info = self._on_all(lambda w: w.ensure_loaded(env_id, source, self.timeout_s, True))[0]
        except PoolError as e:
            with self._lock:
                known = env_id in self._sources
            if not known:  # the workers where it did load must not keep it
                self._on_all(lambda w: w.unload(env_id, self.timeout_s))
            raise PoolError(f"loading {env_id!r} failed: {e}") from None
        with self._lock:  # only after success, so a bad source never replaces a good one
            self._sources[env_id] = source
        return info

    def unload(self, env_id: str) -> dict:
        """Drop ``env_id`` from every worker and from the pool's own record, so a restarted worker does
        not load it again; an id that is not loaded is a no-op. Never fails for a worker's sake: a
        worker that cannot answer is stopped, which drops everything it held.
        Returns {"unloaded": whether the pool had it, "loaded": environments left}."""
        with self._lock:
            self._stats["calls_unload"] += 1
            known = self._sources.pop(env_id, None) is not None
        self._on_all(lambda w: w.unload(env_id, self.timeout_s))
        with self._lock:
            return {"unloaded": known, "loaded": len(self._sources)}

    def loaded(self) -> dict:
        """What is loaded: {"pool": env ids this pool serves, "workers": env ids each live worker process
        holds (None for a worker not running)}."""
        with self._lock:
            pool = sorted(self._sources)
        workers = [sorted(w.loaded) if w.proc is not None and w.proc.poll() is None else None
                   for w in self._workers]
        return {"pool": pool, "workers": workers}

    def sample(self, env_id: str, seeds: list[int], difficulty: int) -> list[dict]:
        """Instance dicts {"env","seed","difficulty","data","prompt","reference"}
        in seed order; any failure raises PoolError."""
        seeds = list(seeds)
        with self._lock:
            self._stats.update(calls_sample=1, items_sample=len(seeds))
        size = max(1, -(-len(seeds) // self.size))  # one chunk of seeds per worker
        chunks = [seeds[i:i + size] for i in range(0, len(seeds), size)]
        out = self._map(env_id, chunks, lambda c: {"op": "sample", "seeds": c, "difficulty": difficulty})
        for chunk, r in zip(chunks, out):
            if isinstance(r, WorkerFailed):
                where = f"seed {chunk[0]}" if len(chunk) == 1 else f"seeds {chunk[0]}..{chunk[-1]}"
                raise PoolError(f"sample {env_id!r} {where} failed: {r}")
        return [{"env": env_id, **inst} for r in out for inst in r["result"]]

    def score(self, env_id: str, items: list[dict], batch: int | None = None) -> list[ScoreResult]:
        """Score items {"data", "response"}: one ScoreResult per item, in order.

        Items go in chunks (one request, one sandboxed task each, up to ``batch`` items; default: spread
        evenly over the workers). A chunk that times out, crashes or overflows is re-run item by item,
        so a verdict is still pinned on exactly the item that caused it.
        """
        items = [{"data": it.get("data"), "response": it.get("response")} for it in items]
        results = self._score(env_id, items, batch or max(1, -(-len(items) // self.size)))
        with self._lock:
            self._stats.update(calls_score=1, items_score=len(items))
            self._stats.update(f"verdict_{r.verdict}" for r in results)
        return results

    def _score(self, env_id: str, items: list[dict], size: int) -> list[ScoreResult]:
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        out = self._map(env_id, chunks, lambda chunk: {"op": "score", "items": chunk})
        results: list[ScoreResult] = []
        for chunk, r in zip(chunks, out):
            if isinstance(r, WorkerFailed) and len(chunk) > 1:
                results += self._score(env_id, chunk, 1)  # find the culprit; the others still score
                continue
            if isinstance(r, WorkerFailed):
                results.append(ScoreResult(0.0, r.verdict, r.error))
                continue
            verdicts = r.get("verdicts") or ["error"] * len(chunk)
            for value, error, verdict in zip(r["result"], r["errors"], verdicts):
                results.append(ScoreResult(0.0, verdict if verdict != "ok" else "error", error) if error is not None
                               else ScoreResult(float(value), "ok"))
        return results

    def pids(self) -> list[int | None]:
        """OS pids of the live worker processes (None for one not running)."""
        return [w.proc.pid if w.proc is not None and w.proc.poll() is None else None for w in self._workers]

    def stats(self) -> dict:
        """Counts of calls, items, score verdicts, worker restarts and loaded environments."""
        with self._lock:
            s, loaded = Counter(self._stats), len(self._sources)
        return {"workers": self.size, "restarts": sum(w.restarts for w in self._workers), "loaded_envs": loaded,
                "calls": {op: s[f"calls_{op}"] for op in ("load", "unload", "sample", "score")},
                "items": {op: s[f"items_{op}"] for op in ("sample", "score")},
                "verdicts": {v: s[f"verdict_{v}"] for v in VERDICTS}}

    def close(self) -> None:
        """Stop the processes this pool started (only those, by Popen handle)."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            w.closed = True  # in-flight calls may finish but start nothing new
        self._executor.shutdown(wait=True)
        for w in self._workers:
            w.stop(grace_s=1.0)
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> "SubprocessPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
