"""Docker sandbox backend: environment workers in warm, locked-down containers.

Each worker is one container of the sandbox image (docker/sandbox/, built by
``docker/sandbox/build_image.sh``) running a JSON-lines worker (default
``python3 -m envs.worker``; ``python3 -m envs.sandbox.zygote`` speaks the same
protocol) with no network, a read-only root, an unprivileged uid, no
capabilities, no-new-privileges, a pids cap, a memory cap without swap and a
small tmpfs /tmp; optionally under gVisor (``runtime="runsc"``).

The parent talks to the worker over the container's attach stream (stdin in;
stdout and stderr out, multiplexed in Docker's 8-byte-header frames since the
container has no TTY). The container is created, attached and only then
started, so no output is ever missed; it logs nothing to disk (log driver
"none").

:class:`DockerWorkerClient` has the interface of :class:`envs.client.WorkerClient`
(``call``, ``ensure_loaded``, ``unload``, ``stop``, ``close``, ``loaded``,
``restarts``, ``closed``), so :class:`envs.pool.SubprocessPool` can drive it. Containers are
started *warm*: a client launches its container (and pings it, and sends the
init requests) in the background as soon as it is made, and after a timeout
or a death the broken container is force-removed and a replacement is started
at once, before the next request needs it. Every container carries the label
``evoforge.sandbox=<pool id>``; :meth:`DockerSandbox.close` removes the
containers this backend started (by id, then any left with its label) and
nothing else.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import re
import select
import socket
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from envs.client import WorkerClient, WorkerFailed
from envs.errors import SandboxUnavailable
from envs.sandbox.limits import Limits

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LABEL = "evoforge.sandbox"  # value: the id of the DockerSandbox that started the container
WORKER_COMMAND = ("python3", "-m", "envs.worker")
ZYGOTE_COMMAND = ("python3", "-m", "envs.sandbox.zygote")
BUILD_HINT = "build it with docker/sandbox/build_image.sh (see docker/sandbox/README.md)"
_STDOUT, _STDERR = 1, 2  # stream ids in Docker's multiplexed attach frames


def project_version() -> str:
    """The project version (pyproject.toml, else the installed metadata), which tags the image."""
    try:
        text = (PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8")
        m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
        if m:
            return m.group(1)
    except OSError:
        pass
    try:
        from importlib.metadata import version
        return version("evoforge")
    except Exception:  # noqa: BLE001 - not installed: any tag will do
        return "latest"


def default_image() -> str:
    """``$EVOFORGE_SANDBOX_IMAGE``, else ``evoforge-sandbox:<project version>`` (what build_image.sh tags)."""
    return os.environ.get("EVOFORGE_SANDBOX_IMAGE") or f"evoforge-sandbox:{project_version()}"


@dataclass
class DockerSandboxConfig:
    image: str | None = None  # None: default_image()
    command: list[str] = field(default_factory=lambda: list(WORKER_COMMAND))
    base_url: str | None = None  # None: DOCKER_HOST or the default socket (docker.from_env)
    runtime: str | None = None  # "runsc" for gVisor (must be registered with the daemon)
    user: str = "65534:65534"
    network_mode: str = "none"
    mem_limit: str = "512m"  # swap is off: memswap_limit = mem_limit
    pids_limit: int = 64
    cpus: float | None = 1.0  # CPU quota per container (None: no quota)
    tmpfs_size: str = "64m"  # /tmp; the only writable path
    init: bool = True  # tini as PID 1: reaps zombies, forwards signals
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # extra labels (LABEL is always set)
    start_timeout_s: float = 30.0  # create + start + first ping (+ init requests)
    max_line_bytes: int = 64 << 20  # a longer protocol line breaks the protocol
    launch_threads: int = 4  # background container starts/removals in parallel


class _Container:
    """One running container seen from the parent: the attach stream, demultiplexed into lines.

    Popen-like where the pool looks: ``pid`` (the host PID of the container's PID 1, once
    started), ``poll()`` (None while running) and ``returncode``.
    """

    def __init__(self, container, attach, max_line_bytes: int, on_exit: Callable[["_Container"], None]):
        self.container, self.id = container, container.id
        self._attach = attach  # keep the SocketIO (and its HTTP response) alive
        self._sock = getattr(attach, "_sock", attach)  # the raw socket (unix/tcp); TLS sockets are it already
        self._sock.settimeout(None)  # the Docker client's request timeout must not end an idle stream
        self._max_line = max_line_bytes
        self._on_exit = on_exit
        self.lines: queue.SimpleQueue = queue.SimpleQueue()  # str lines; None at EOF
        self.stderr_tail: deque = deque(maxlen=20)
        self.exit_info: str | None = None  # set at EOF for a container that was not removed by us
        self.pid: int | None = None
        self.returncode: int | None = None
        self.broken: str | None = None  # protocol violation seen by the reader
        self._removing = False
        self._remove_lock = threading.Lock()
        self._eof = threading.Event()
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"docker-attach-{self.id[:12]}", daemon=True)

    def start_reading(self) -> None:
        self._reader.start()

    def alive(self) -> bool:
        """True while the container's stream is open (the worker is running)."""
        return not self._eof.is_set()

    def poll(self) -> int | None:
        """Like Popen.poll: None while running, else the exit code (-9: removed by us)."""
        if not self._eof.is_set():
            return None
        return self.returncode if self.returncode is not None else -9

    def _recv_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _read(self) -> None:
        out = bytearray()
        try:
            while True:
                header = self._recv_exact(8)
                if header is None:
                    break
                kind, size = header[0], int.from_bytes(header[4:8], "big")
                payload = self._recv_exact(size) if size else b""
                if payload is None:
                    break
                if kind == _STDOUT:
                    out += payload
                    if b"\n" in payload:
                        *lines, rest = out.split(b"\n")
                        out = bytearray(rest)
                        for line in lines:
                            self.lines.put(line.decode("utf-8", "replace"))
                    if len(out) > self._max_line:
                        self.broken = f"a protocol line exceeded {self._max_line} bytes"
                        break
                elif kind == _STDERR:
                    self.stderr_tail.append(payload[-2000:].decode("utf-8", "replace"))
        except (OSError, ValueError):
            pass  # socket closed under us (removal)
        finally:
            if not self._removing:
                self.exit_info = self._describe_exit()
            self._eof.set()
            self.lines.put(None)
            self._on_exit(self)

    def _describe_exit(self) -> str:
        if self.broken:
            return self.broken
        code, oom = None, False
        try:
            code = self.container.wait(timeout=5).get("StatusCode")
            self.container.reload()
            state = self.container.attrs.get("State", {})
            code, oom = state.get("ExitCode", code), bool(state.get("OOMKilled"))
        except Exception:  # noqa: BLE001 - gone already, or the daemon is busy: report what we have
            pass
        self.returncode = code
        text = f"container {self.id[:12]} exited with code {code}"
        if oom:
            text += " (killed by the out-of-memory killer: memory cap reached)"
        tail = "".join(self.stderr_tail).strip()[-500:]
        return text + (f"; stderr: {tail}" if tail else "")

    def send(self, text: str, deadline: float) -> None:
        """Write one line; raise TimeoutError if the worker stops reading until ``deadline``."""
        data = memoryview((text + "\n").encode("utf-8"))
        with self._send_lock:
            if type(self._sock) is not socket.socket:  # TLS or SSH transports: no per-call non-blocking
                self._sock.sendall(data)
                return
            while data:  # without blocking: a worker that does not read must not hang the caller
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                if not select.select([], [self._sock], [], left)[1]:
                    continue
                try:
                    data = data[self._sock.send(data[:1 << 20], socket.MSG_DONTWAIT):]
                except BlockingIOError:
                    continue

    def exchange(self, text: str, msg_id, timeout_s: float) -> dict:
        """Send one request line and wait (at most ``timeout_s`` in all) for its response."""
        deadline = time.monotonic() + timeout_s
        try:
            self.send(text, deadline)
        except TimeoutError:
            raise WorkerFailed("timeout", f"request not taken within {timeout_s:g} s") from None
        except OSError as e:
            self._eof.wait(2.0)
            raise WorkerFailed("crashed", self.exit_info or f"worker broke the protocol: {e}") from None
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.0)) if left > 0 else self.lines.get_nowait()
            except queue.Empty:
                raise WorkerFailed("timeout", f"no response within {timeout_s:g} s") from None
            if line is None:
                self.lines.put(None)  # stay at EOF for anyone else
                raise WorkerFailed("crashed", self.exit_info or f"container {self.id[:12]} stopped")
            if not line.strip():
                continue
            try:
                resp = json.loads(line)
            except ValueError as e:
                raise WorkerFailed("crashed", f"worker broke the protocol: {e}") from None
            if isinstance(resp, dict) and resp.get("id") == msg_id:
                return resp

    def remove(self) -> None:
        """Force-remove the container (kills it); idempotent."""
        with self._remove_lock:
            if self._removing:
                return
            self._removing = True
        try:
            self.container.remove(force=True)
        except Exception:  # noqa: BLE001 - already gone (or the daemon is: DockerSandbox.close sweeps)
            pass
        for closer in (lambda: self._sock.shutdown(socket.SHUT_RDWR), self._sock.close, self._attach.close):
            try:
                closer()
            except Exception:  # noqa: BLE001
                pass


class DockerSandbox:
    """A Docker daemon connection, the sandbox settings, and every container started through it."""

    def __init__(self, config: DockerSandboxConfig | None = None, client=None, **overrides):
        try:
            import docker
        except ImportError as e:
            raise SandboxUnavailable(
                f"the Docker backend needs the docker SDK (pip install 'docker>=7'): {e}") from None
        self._docker = docker
        self.config = cfg = replace(config or DockerSandboxConfig(), **overrides)
        self.image = cfg.image or default_image()
        self._own_client = client is None
        try:
            if client is None:
                client = (docker.DockerClient(base_url=cfg.base_url, max_pool_size=32) if cfg.base_url
                          else docker.from_env(max_pool_size=32))
            client.ping()
        except Exception as e:  # noqa: BLE001
            where = cfg.base_url or os.environ.get("DOCKER_HOST") or "the default socket"
            raise SandboxUnavailable(f"cannot reach the Docker daemon at {where}: {e}") from None
        self.client = client
        try:
            client.images.get(self.image)
        except docker.errors.ImageNotFound:
            self._close_client()
            raise SandboxUnavailable(f"sandbox image {self.image!r} is missing: {BUILD_HINT}") from None
        if cfg.runtime:
            runtimes = client.info().get("Runtimes") or {}
            if cfg.runtime not in runtimes:
                self._close_client()
                raise SandboxUnavailable(
                    f"container runtime {cfg.runtime!r} is not registered with the Docker daemon "
                    f"(it has: {', '.join(sorted(runtimes)) or 'none'}); for gVisor install runsc and "
                    "add it to the daemon's \"runtimes\" (see docker/sandbox/README.md)")
        self.pool_id = uuid.uuid4().hex[:12]
        self._ids: set[str] = set()  # every container this sandbox created and has not removed
        self._lock = threading.Lock()
        self.closed = False
        self._executor = ThreadPoolExecutor(max(1, cfg.launch_threads), thread_name_prefix="docker-sandbox")

    # -- containers -----------------------------------------------------------------------------
    def _create_kwargs(self) -> dict:
        cfg = self.config
        docker = self._docker
        kw = dict(
            command=list(cfg.command), detach=True, stdin_open=True, tty=False,
            network_mode=cfg.network_mode, read_only=True, user=cfg.user,
            pids_limit=cfg.pids_limit, mem_limit=cfg.mem_limit, memswap_limit=cfg.mem_limit,
            cap_drop=["ALL"], security_opt=["no-new-privileges"],
            tmpfs={"/tmp": f"size={cfg.tmpfs_size},mode=1777,nosuid,nodev,noexec"},
            labels={**cfg.labels, LABEL: self.pool_id},
            log_config=docker.types.LogConfig(type="none"),
            environment=dict(cfg.environment), init=cfg.init,
        )
        if cfg.cpus:
            kw["nano_cpus"] = int(cfg.cpus * 1e9)
        if cfg.runtime:
            kw["runtime"] = cfg.runtime
        return kw

    def start_container(self, on_exit: Callable[[_Container], None] = lambda c: None) -> _Container:
        """Create, attach and start one container (not yet pinged)."""
        with self._lock:
            if self.closed:
                raise WorkerFailed("crashed", "the Docker sandbox is closed")
        container = self.client.containers.create(self.image, **self._create_kwargs())
        with self._lock:
            self._ids.add(container.id)
        proc = None
        try:
            attach = container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            proc = _Container(container, attach, self.config.max_line_bytes, on_exit)
            proc.start_reading()
            container.start()
            container.reload()
            proc.pid = container.attrs.get("State", {}).get("Pid") or None
        except BaseException:
            if proc is not None:
                self._remove(proc)
            else:
                self._remove_id(container.id)
            raise
        with self._lock:
            closed = self.closed
        if closed:  # close() ran meanwhile and may have missed it
            self._remove(proc)
            raise WorkerFailed("crashed", "the Docker sandbox is closed")
        return proc

    def _remove(self, proc: _Container) -> None:
        proc.remove()
        with self._lock:
            self._ids.discard(proc.id)

    def _remove_id(self, cid: str) -> None:
        try:
            self.client.api.remove_container(cid, force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        with self._lock:
            self._ids.discard(cid)

    def _submit(self, fn, *args) -> Future | None:
        try:
            return self._executor.submit(fn, *args)
        except RuntimeError:  # executor shut down: the sandbox is closing
            return None

    def discard(self, proc: _Container) -> None:
        """Remove a broken container in the background (at once if the sandbox is closing)."""
        if self._submit(self._remove, proc) is None:
            self._remove(proc)

    def containers(self, all: bool = True) -> list:  # noqa: A002 - mirrors the SDK's argument
        """The containers carrying this sandbox's label (``all``: stopped ones too)."""
        return self.client.containers.list(all=all, filters={"label": f"{LABEL}={self.pool_id}"})

    # -- clients --------------------------------------------------------------------------------
    def new_client(self, init_requests: list[dict] | None = None, prewarm: bool = True) -> "DockerWorkerClient":
        return DockerWorkerClient(self, init_requests, prewarm)

    def client_factory(self, init_requests: list[dict] | None = None) -> Callable[[], "DockerWorkerClient"]:
        """A no-argument factory of warm clients, for ``SubprocessPool(client_factory=...)``."""
        return lambda: self.new_client(init_requests)

    def close(self) -> None:
        """Remove every container this sandbox started (by id, then by its label); idempotent."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self._executor.shutdown(wait=True)  # pending starts finish (and see closed) or removals run
        with self._lock:
            ids = list(self._ids)
        for cid in ids:
            self._remove_id(cid)
        try:
            for c in self.containers():
                c.remove(force=True)
        except Exception:  # noqa: BLE001 - daemon gone: nothing more we can do
            pass
        self._close_client()

    def _close_client(self) -> None:
        if self._own_client:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> "DockerSandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DockerWorkerClient:
    """One worker container seen from the parent; the interface of envs.client.WorkerClient."""

    def __init__(self, sandbox: DockerSandbox, init_requests: list[dict] | None = None, prewarm: bool = True):
        self.sandbox = sandbox
        self.init_requests = list(init_requests or [])  # sent to every fresh container after its ping
        self.proc: _Container | None = None
        self.loaded: dict[str, str] = {}  # env_id -> source loaded in the current container
        self.restarts = 0  # containers removed after a timeout/crash during a call
        self.closed = False  # once closed, never start again
        self._ids = itertools.count(1)
        self._life = threading.Lock()
        self._pending: Future | None = None  # a warm container being started
        if prewarm:
            self._pending = sandbox._submit(self._launch)

    @property
    def container_id(self) -> str | None:
        proc = self.proc
        return proc.id if proc is not None else None

    def _launch(self) -> _Container:
        """Start a container and make it ready: ping, then the init requests."""
        start_s = self.sandbox.config.start_timeout_s
        proc = self.sandbox.start_container(on_exit=self._on_exit)
        try:
            for req in [{"op": "ping"}, *self.init_requests]:
                msg = {"id": next(self._ids), **req}
                resp = proc.exchange(json.dumps(msg), msg["id"], start_s)
                if not resp.get("ok"):
                    raise WorkerFailed("crashed", f"worker refused {req.get('op')!r}: {resp.get('error')}")
        except BaseException as e:
            self.sandbox._remove(proc)
            if isinstance(e, WorkerFailed):
                raise WorkerFailed("crashed", f"container did not start: {e.error}") from None
            raise
        return proc

    def _on_exit(self, proc: _Container) -> None:
        """Reader thread: the container's stream ended; replace it now unless a call is handling it."""
        with self._life:
            ours = self.proc is proc and not self.closed
        if ours and proc.exit_info is not None:  # died on its own (not removed by us)
            self._retire(proc)

    def _retire(self, proc: _Container) -> None:
        """Drop a broken container: remove it in the background and start a warm replacement."""
        with self._life:
            if self.proc is proc:
                self.proc, self.loaded = None, {}
            if not self.closed and self._pending is None:
                self._pending = self.sandbox._submit(self._launch)
        self.sandbox.discard(proc)

    def _acquire(self) -> _Container:
        with self._life:
            if self.closed:
                raise WorkerFailed("crashed", "worker is closed")
            proc = self.proc
            if proc is not None and proc.alive():
                return proc
            self.proc, self.loaded = None, {}
            pending, self._pending = self._pending, None
        if proc is not None:
            self.sandbox.discard(proc)
        try:
            proc = pending.result() if pending is not None else self._launch()
        except WorkerFailed:
            raise
        except Exception as e:  # noqa: BLE001 - daemon errors, image gone, ...
            raise WorkerFailed("crashed", f"could not start a sandbox container: {type(e).__name__}: {e}") from None
        with self._life:
            if not self.closed:
                self.proc, self.loaded = proc, {}
                return proc
        self.sandbox._remove(proc)
        raise WorkerFailed("crashed", "worker is closed")

    def call(self, msg: dict, timeout_s: float) -> dict:
        """Send one request, return its response; raise WorkerFailed."""
        proc = self._acquire()
        msg = {"id": next(self._ids), **msg}
        try:
            text = json.dumps(msg, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise WorkerFailed("error", f"request is not JSON-serialisable: {e}") from None
        try:
            return proc.exchange(text, msg["id"], timeout_s)
        except WorkerFailed:
            self.restarts += 1
            self._retire(proc)
            raise

    # the same rules as for a process: a container handle answers poll() like Popen
    ensure_loaded = WorkerClient.ensure_loaded
    unload = WorkerClient.unload  # a container that fails or refuses it is removed (and holds nothing)

    def stop(self, grace_s: float = 0.0) -> None:
        """Remove the current container now (force: a sandbox has nothing to flush, so ``grace_s``
        is unused). A closed client also removes the warm one being started."""
        with self._life:
            proc, self.proc, self.loaded = self.proc, None, {}
            pending = None
            if self.closed:
                pending, self._pending = self._pending, None
        if proc is not None:
            self.sandbox._remove(proc)
        if pending is not None:
            try:
                self.sandbox._remove(pending.result(timeout=self.sandbox.config.start_timeout_s + 5))
            except Exception:  # noqa: BLE001 - it failed to start: nothing to remove (close() sweeps)
                pass

    def close(self) -> None:
        self.closed = True
        self.stop()


def make_docker_pool(size: int, limits: Limits | None = None, timeout_s: float = 15.0,
                     init_requests: list[dict] | None = None, **overrides):
    """A SubprocessPool of ``size`` sandbox containers running the zygote (``envs.sandbox.zygote``).

    The container caps sit above the per-task ``limits`` the zygote enforces: memory
    ``memory_mb + tmp_mb + 128`` MiB, pids ``nproc + 32`` (at least 64), /tmp ``tmp_mb``.
    ``overrides`` go to DockerSandboxConfig (image, base_url, runtime="runsc", cpus, ...).
    """
    from envs.pool import SubprocessPool

    limits = limits or Limits()
    settings = dict(command=list(ZYGOTE_COMMAND), mem_limit=f"{limits.memory_mb + limits.tmp_mb + 128}m",
                    pids_limit=max(64, limits.nproc + 32), tmpfs_size=f"{limits.tmp_mb}m",
                    environment={"EVOFORGE_OWN_PID_NAMESPACE": "1"})
    settings.update(overrides)
    sandbox = DockerSandbox(**settings)
    try:
        return SubprocessPool(size, timeout_s=timeout_s, isolated=True,
                              client_factory=sandbox.client_factory(init_requests), on_close=sandbox.close)
    except BaseException:
        sandbox.close()
        raise
