"""One worker subprocess seen from the parent: JSON lines with a timeout.

A worker that times out, dies or breaks the protocol is killed at once and
started again (fresh, with nothing loaded) on its next call.
"""
from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor


# Workers are started from one long-lived thread: a sandbox started with --die-with-parent
# (PR_SET_PDEATHSIG) is killed when the *thread* that spawned it exits, not the process.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-spawner")


class WorkerFailed(Exception):
    """A request failed; verdict is "error", "timeout" or "crashed"."""

    def __init__(self, verdict: str, error: str):
        super().__init__(f"[{verdict}] {error}")
        self.verdict, self.error = verdict, error


def _pump(stream, sink) -> None:
    """Forward lines to ``sink`` (None at EOF) so reads can time out."""
    with stream:
        for line in stream:
            sink(line)
    sink(None)


class WorkerClient:
    """Owns at most one live worker process (started lazily by ``call``)."""

    def __init__(self, argv: list[str], cwd: str | None = None, env: dict | None = None,
                 init_requests: list[dict] | None = None):
        self.argv, self.cwd, self.env = argv, cwd, env
        self.init_requests = list(init_requests or [])  # sent to every fresh process (e.g. sandbox limits)
        self.proc: subprocess.Popen | None = None
        self.loaded: dict[str, str] = {}  # env_id -> source loaded in this process
        self.restarts = 0  # kills after a timeout/crash
        self.closed = False  # once closed, never start again
        self._next_id = 0
        self._life = threading.Lock()  # start vs stop from close() in another thread

    def _start(self) -> None:
        with self._life:
            if self.closed:
                raise WorkerFailed("crashed", "worker is closed")
            self.lines: queue.SimpleQueue = queue.SimpleQueue()
            self.stderr_tail: deque = deque(maxlen=20)
            self.loaded = {}
            try:
                # New session: a Ctrl-C aimed at the trainer does not hit workers.
                proc = self.proc = _SPAWNER.submit(
                    subprocess.Popen, self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, cwd=self.cwd, env=self.env, text=True,
                    encoding="utf-8", errors="replace", bufsize=1, start_new_session=True).result()
            except OSError as e:
                raise WorkerFailed("crashed", f"could not start worker {self.argv}: {e}") from None
        self._pumps = [threading.Thread(target=_pump, args=(s, sink), daemon=True)
                       for s, sink in ((proc.stdout, self.lines.put),
                                       (proc.stderr, self.stderr_tail.append))]
        for t in self._pumps:
            t.start()

    def stop(self, grace_s: float = 0.0) -> None:
        """End this client's process: EOF first, SIGKILL after ``grace_s``."""
        with self._life:
            proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()  # a healthy worker exits at EOF
            proc.wait(grace_s)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def call(self, msg: dict, timeout_s: float) -> dict:
        """Send one request, return its response; raise WorkerFailed."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            self.stop()
            self._start()
            for init in self.init_requests:
                resp = self.call(init, timeout_s)
                if not resp["ok"]:
                    self.stop()
                    raise WorkerFailed("crashed", f"worker refused {init['op']!r}: {resp['error']}")
        self._next_id += 1
        msg = {"id": self._next_id, **msg}
        try:
            text = json.dumps(msg, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise WorkerFailed("error", f"request is not JSON-serialisable: {e}") from None
        try:
            return self._exchange(self.proc, text, msg["id"], timeout_s)
        except WorkerFailed:
            self.restarts += 1
            self.stop()
            raise

    def _exchange(self, proc, text: str, msg_id: int, timeout_s: float) -> dict:
        if proc is None:  # stopped by close() meanwhile
            raise WorkerFailed("crashed", "worker is closed")
        try:
            proc.stdin.write(text + "\n")
            proc.stdin.flush()
            while True:
                line = self.lines.get(timeout=timeout_s)
                if line is None:
                    proc.wait(1.0)
                    self._pumps[1].join(0.5)  # let the last stderr lines arrive
                    tail = "".join(filter(None, self.stderr_tail)).strip()[-500:]
                    raise WorkerFailed("crashed", f"worker exited with code {proc.returncode}"
                                       + (f"; stderr: {tail}" if tail else ""))
                resp = json.loads(line)
                if isinstance(resp, dict) and resp.get("id") == msg_id:
                    return resp
        except queue.Empty:
            raise WorkerFailed("timeout", f"no response within {timeout_s:g} s") from None
        except (OSError, ValueError, subprocess.TimeoutExpired) as e:
            raise WorkerFailed("crashed", f"worker broke the protocol: {e}") from None

    def ensure_loaded(self, env_id: str, source: str, timeout_s: float,
                      force: bool = False) -> dict | None:
        """Load ``env_id`` unless this process already has this very source."""
        proc = self.proc
        alive = proc is not None and proc.poll() is None
        if not force and alive and self.loaded.get(env_id) is source:
            return None
        resp = self.call({"op": "load", "env_id": env_id, "source": source}, timeout_s)
        if not resp["ok"]:
            raise WorkerFailed(resp.get("verdict", "error"), resp["error"])
        self.loaded[env_id] = source
        return resp["result"]

    def unload(self, env_id: str, timeout_s: float) -> dict | None:
        """Make the running process forget ``env_id``; never starts one (a fresh process holds nothing).

        Returns the worker's answer ({"unloaded", "loaded"}), or None when no process is running. A
        worker that fails or refuses the request is stopped: a stopped worker holds nothing either, so
        ``env_id`` is gone whatever happens (the next call starts a fresh process).
        """
        self.loaded.pop(env_id, None)  # first: even a racing restart never counts it as loaded
        proc = self.proc
        if self.closed or proc is None or proc.poll() is not None:
            return None
        try:
            resp = self.call({"op": "unload", "env_id": env_id}, timeout_s)
        except WorkerFailed:  # call() stopped the process already
            return None
        if not resp["ok"]:  # e.g. an older worker without the op
            self.restarts += 1
            self.stop()
            return None
        return resp["result"]
