"""The Docker sandbox backend against a real, private dockerd (envs/sandbox/docker_backend.py).

The fixtures (conftest_docker.py) start a dockerd of our own on a private unix
socket, host networking untouched, with a persistent data root so the sandbox
image (docker/sandbox/build_image.sh, ~1 min the first time) is built once per
machine; later runs only refresh the envs/ layer (~1 s). The daemon is stopped
by its PID at the end. Without dockerd or root the tests skip with the reason.
"""
from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest

from envs.client import WorkerFailed
from envs.registry import resolve_environment

try:
    from conftest_docker import RUNSC, docker_daemon, sandbox_image  # noqa: F401 - fixtures
except ImportError:  # pytest's importlib import mode: the project root is on the path
    from tests.envs.conftest_docker import RUNSC, docker_daemon, sandbox_image  # noqa: F401

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]

PROBE = r'''
import os
import socket


class Probe:
    name = "probe"

    def sample(self, rng, difficulty):
        facts = {"uid": os.getuid(), "gid": os.getgid(), "interfaces": sorted(os.listdir("/sys/class/net"))}
        for key, path in (("opt_write", "/opt/x"), ("root_write", "/x"), ("tmp_write", "/tmp/x")):
            try:
                with open(path, "w") as f:
                    f.write("written")
                with open(path) as f:
                    facts[key] = f.read()
            except OSError as e:
                facts[key] = f"{type(e).__name__}: {e}"
        if difficulty < 0:  # a large instance: many attach frames
            facts["pad"] = "y" * -difficulty
        if difficulty > 0:  # a port the test listens on, on the host's loopback
            try:
                socket.create_connection(("127.0.0.1", difficulty), timeout=2).close()
                facts["connect"] = "connected"
            except OSError as e:
                facts["connect"] = f"{type(e).__name__}: {e}"
        return facts

    def prompt(self, instance):
        print("chatter on stdout " * 50)  # the worker sends it to stderr: must not break framing
        return "probe " + instance.get("pad", "")

    def reference(self, instance):
        return ""

    def score(self, instance, response):
        if response == "hang":
            while True:
                pass
        if response == "oom":
            chunks = []
            while True:
                chunks.append(b"x" * (64 << 20))
        if response == "exit":
            os._exit(3)
        return 1.0 if response == "ok" else 0.0
'''


@pytest.fixture(scope="module")
def sandbox(docker_daemon, sandbox_image):
    from envs.sandbox.docker_backend import DockerSandbox

    client, base_url = docker_daemon
    sb = DockerSandbox(base_url=base_url, image=sandbox_image)
    yield sb
    sb.close()


def _running(sandbox) -> list[str]:
    return sorted(c.id for c in sandbox.containers(all=False))


def _wait_for(cond, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@contextlib.contextmanager
def _listener():
    """A TCP listener on the host's loopback; yields (port, accepted connections)."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    accepted: list = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                accepted.append(conn)
            except OSError:
                pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], accepted
    finally:
        stop.set()
        t.join()
        srv.close()
        for c in accepted:
            c.close()


def _load(client, env_id: str, source: str, timeout_s: float = 10.0) -> dict:
    return client.ensure_loaded(env_id, source, timeout_s)


def _score(client, env_id: str, data, response: str, timeout_s: float = 10.0) -> dict:
    return client.call({"op": "score", "env_id": env_id, "items": [{"data": data, "response": response}]}, timeout_s)


# -- tests ----------------------------------------------------------------------------------------
def test_repeat_digits_through_a_pool_of_containers(docker_daemon, sandbox_image):
    from envs import pool as pool_mod
    from envs.sandbox.docker_backend import DockerSandbox

    client, base_url = docker_daemon
    sb = DockerSandbox(base_url=base_url, image=sandbox_image)
    kwargs = {"client_factory": sb.client_factory(), "on_close": sb.close}
    try:
        t = time.monotonic()
        with pool_mod.SubprocessPool(2, timeout_s=10.0, **kwargs) as pool:
            started = time.monotonic() - t
            assert len(_running(sb)) == 2
            info = pool.load("repeat_digits", resolve_environment("repeat_digits")[1])
            assert info["name"] == "repeat_digits" and info["answer_format"] == "raw"
            insts = pool.sample("repeat_digits", list(range(8)), 1)
            assert [i["seed"] for i in insts] == list(range(8))
            assert all(i["data"]["length"] == 3 for i in insts)
            items = [{"data": i["data"], "response": i["reference"]} for i in insts]
            items.append({"data": {"digit": 1, "length": 4}, "response": "11a1"})
            res = pool.score("repeat_digits", items)
            assert [r.score for r in res] == [1.0] * 8 + [0.75]
            assert {r.verdict for r in res} == {"ok"}
            assert pool.stats()["restarts"] == 0
        print(f"\n[docker] pool of 2 warm containers up (pinged) in {started:.2f} s")
        assert _wait_for(lambda: not sb.containers())  # the pool's close removed them
    finally:
        sb.close()
    assert not client.containers.list(all=True, filters={"label": f"evoforge.sandbox={sb.pool_id}"})


def test_isolation(sandbox):
    c = sandbox.new_client()
    try:
        _load(c, "probe", PROBE)
        with _listener() as (port, accepted):
            resp = c.call({"op": "sample", "env_id": "probe", "seeds": [0], "difficulty": port}, 10.0)
            assert resp["ok"], resp
            facts = resp["result"][0]["data"]
            time.sleep(0.2)
            assert accepted == []  # nothing reached the host's loopback listener
        assert facts["connect"].startswith(("ConnectionRefusedError", "OSError")), facts
        assert facts["interfaces"] == ["lo"]  # network "none": loopback only, its own
        assert (facts["uid"], facts["gid"]) == (65534, 65534)
        assert "Read-only file system" in facts["opt_write"], facts
        assert "Read-only file system" in facts["root_write"] or "Permission denied" in facts["root_write"]
        assert facts["tmp_write"] == "written"
        attrs = sandbox.client.api.inspect_container(c.container_id)
        host = attrs["HostConfig"]
        assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
        assert host["PidsLimit"] == 64 and host["Memory"] == 512 << 20 and host["MemorySwap"] == 512 << 20
        assert attrs["Config"]["User"] == "65534:65534"
    finally:
        c.close()


def test_memory_cap_kills_and_replaces(sandbox):
    c = sandbox.new_client()
    try:
        _load(c, "probe", PROBE)
        first = c.container_id
        t = time.monotonic()
        with pytest.raises(WorkerFailed) as e:
            _score(c, "probe", {}, "oom", timeout_s=20.0)
        assert e.value.verdict == "crashed"
        assert "out-of-memory" in e.value.error or "code 137" in e.value.error, e.value.error
        print(f"\n[docker] memory hog: {e.value.error}")
        assert time.monotonic() - t < 20
        assert c.restarts == 1
        assert _wait_for(lambda: first not in _running(sandbox))
        _load(c, "probe", PROBE)  # a fresh container: nothing loaded in it
        assert _score(c, "probe", {}, "ok")["result"] == [1.0]
        assert c.container_id != first
    finally:
        c.close()


def test_timeout_removes_and_replaces_the_container(sandbox):
    c = sandbox.new_client()
    try:
        _load(c, "probe", PROBE)
        first = c.container_id
        t = time.monotonic()
        with pytest.raises(WorkerFailed) as e:
            _score(c, "probe", {}, "hang", timeout_s=1.0)
        assert e.value.verdict == "timeout" and "1 s" in e.value.error
        assert time.monotonic() - t < 2.0
        # The hung container is removed, a warm replacement is already starting.
        assert _wait_for(lambda: first not in _running(sandbox) and len(_running(sandbox)) == 1)
        with pytest.raises(Exception):
            sandbox.client.containers.get(first)
        assert c.ensure_loaded("probe", PROBE, 10.0) is not None  # reloaded in the new container
        assert _score(c, "probe", {}, "ok")["result"] == [1.0]
        assert c.container_id != first and c.restarts == 1
        # A worker that dies on its own is replaced too.
        second = c.container_id
        with pytest.raises(WorkerFailed) as e:
            _score(c, "probe", {}, "exit")
        assert e.value.verdict == "crashed" and "code 3" in e.value.error
        _load(c, "probe", PROBE)
        assert _score(c, "probe", {}, "ok")["result"] == [1.0] and c.container_id not in (first, second)
    finally:
        c.close()


def test_framing_large_responses_and_stderr_chatter(sandbox):
    c = sandbox.new_client()
    try:
        _load(c, "probe", PROBE)
        resp = c.call({"op": "sample", "env_id": "probe", "seeds": list(range(40)), "difficulty": 0}, 10.0)
        assert resp["ok"] and len(resp["result"]) == 40
        # ~4 MB back (data and prompt), ~2 MB in: many attach frames both ways.
        resp = c.call({"op": "sample", "env_id": "probe", "seeds": [1], "difficulty": -2_000_000}, 10.0)
        assert resp["ok"] and resp["result"][0]["prompt"] == "probe " + "y" * 2_000_000
        resp = _score(c, "probe", {"blob": "q" * 2_000_000}, "ok")
        assert resp["result"] == [1.0]
        assert c.restarts == 0
    finally:
        c.close()


def test_warm_call_latency(sandbox):
    c = sandbox.new_client()
    try:
        source = resolve_environment("repeat_digits")[1]
        t = time.monotonic()
        _load(c, "repeat_digits", source)
        first = time.monotonic() - t  # waits for the warm container started with the client
        lat = []
        for i in range(50):
            t = time.perf_counter()
            resp = _score(c, "repeat_digits", {"digit": 1, "length": 3}, "111")
            lat.append(time.perf_counter() - t)
            assert resp["result"] == [1.0]
        med = statistics.median(lat) * 1000
        print(f"\n[docker] first call (container start + load) {first:.2f} s; warm score call: "
              f"median {med:.2f} ms, max {max(lat) * 1000:.2f} ms")
        assert med < 100
    finally:
        c.close()


def test_close_leaves_no_container(docker_daemon, sandbox_image):
    from envs.sandbox.docker_backend import DockerSandbox

    client, base_url = docker_daemon
    sb = DockerSandbox(base_url=base_url, image=sandbox_image)
    clients = [sb.new_client() for _ in range(3)]
    assert clients[0].call({"op": "ping"}, 10.0)["result"] == "pong"
    hung = clients[1]
    _load(hung, "probe", PROBE)
    threading.Thread(target=_safe_score, args=(hung,), daemon=True).start()  # a call still running at close
    time.sleep(0.5)
    labelled = {"label": f"evoforge.sandbox={sb.pool_id}"}
    assert len(client.containers.list(filters=labelled)) == 3
    other = client.containers.create(sandbox_image, ["python3", "-c", "pass"], labels={"not": "ours"})
    try:
        sb.close()
        assert client.containers.list(all=True, filters=labelled) == []
        client.containers.get(other.id)  # someone else's container is untouched
        with pytest.raises(WorkerFailed):
            clients[0].call({"op": "ping"}, 5.0)  # a closed sandbox starts nothing new
        assert client.containers.list(all=True, filters=labelled) == []
    finally:
        other.remove(force=True)


def _safe_score(c) -> None:
    with contextlib.suppress(WorkerFailed):
        _score(c, "probe", {}, "hang", timeout_s=30.0)


@pytest.mark.skipif(RUNSC is None, reason="gVisor's runsc is not installed (Debian: apt-get install runsc)")
def test_gvisor_runtime(docker_daemon, sandbox_image):
    from envs.errors import SandboxUnavailable
    from envs.sandbox.docker_backend import DockerSandbox

    client, base_url = docker_daemon
    try:
        sb = DockerSandbox(base_url=base_url, image=sandbox_image, runtime="runsc")
    except SandboxUnavailable as e:
        pytest.skip(str(e))
    try:
        t = time.monotonic()
        c = sb.new_client()
        try:
            resp = c.call({"op": "ping"}, 30.0)
        except WorkerFailed as e:
            pytest.skip(f"runsc is registered but cannot run containers on this machine: {e}")
        assert resp["result"] == "pong"
        started = time.monotonic() - t
        lat = []
        for _ in range(20):
            t = time.perf_counter()
            c.call({"op": "ping"}, 10.0)
            lat.append(time.perf_counter() - t)
        print(f"\n[docker] gVisor (runsc, ptrace): container up in {started:.2f} s; "
              f"warm ping median {statistics.median(lat) * 1000:.2f} ms")
        _load(c, "probe", PROBE)
        facts = c.call({"op": "sample", "env_id": "probe", "seeds": [0], "difficulty": 0}, 10.0)["result"][0]["data"]
        assert facts["uid"] == 65534 and facts["tmp_write"] == "written"
        assert facts["opt_write"].startswith("PermissionError") or "Read-only file system" in facts["opt_write"]
        assert facts["interfaces"] == ["lo"]
        assert client.api.inspect_container(c.container_id)["HostConfig"]["Runtime"] == "runsc"
    finally:
        sb.close()


def test_zygote_in_a_container(docker_daemon, sandbox_image):
    """The sandbox zygote (same protocol) as the in-container command, with its limits init request."""
    from envs.sandbox.docker_backend import ZYGOTE_COMMAND, DockerSandbox
    from envs.sandbox.limits import Limits

    if not (ROOT / "envs" / "sandbox" / "zygote.py").exists():
        pytest.skip("envs/sandbox/zygote.py is not there yet")
    client, base_url = docker_daemon
    limits = Limits(wall_s=2.0)
    with DockerSandbox(base_url=base_url, image=sandbox_image, command=list(ZYGOTE_COMMAND)) as sb:
        c = sb.new_client(init_requests=[{"op": "limits", "limits": limits.to_dict()}])
        _load(c, "repeat_digits", resolve_environment("repeat_digits")[1])
        resp = _score(c, "repeat_digits", {"digit": 4, "length": 3}, "444")
        assert resp["ok"] and resp["result"] == [1.0], resp


HANG = """
class Hang:
    name = "hang"
    def sample(self, rng, difficulty): return {"n": rng.randrange(5)}
    def prompt(self, instance): return "go"
    def reference(self, instance): return "ok"
    def score(self, instance, response):
        while response == "hang":
            pass
        return 1.0
"""


def test_make_pool_docker_backend(docker_daemon, sandbox_image, monkeypatch):
    """envs.sandbox.make_pool("docker", ...): zygote containers behind SubprocessPool's client_factory hook."""
    from envs.sandbox.limits import Limits
    from envs.sandbox.backends import make_pool
    from envs.sandbox.docker_backend import LABEL

    client, base_url = docker_daemon
    monkeypatch.setenv("DOCKER_HOST", base_url)
    monkeypatch.setenv("EVOFORGE_SANDBOX_IMAGE", sandbox_image)
    before = {c.id for c in client.containers.list(all=True, filters={"label": LABEL})}
    with make_pool("docker", 2, Limits(wall_s=1.0)) as pool:
        assert pool.isolated
        assert len({c.id for c in client.containers.list(filters={"label": LABEL})} - before) == 2
        pool.load("repeat_digits", resolve_environment("repeat_digits")[1])
        pool.load("hang", HANG)
        insts = pool.sample("repeat_digits", [0, 1, 2], 1)
        res = pool.score("repeat_digits", [{"data": i["data"], "response": i["reference"]} for i in insts])
        assert [(r.score, r.verdict) for r in res] == [(1.0, "ok")] * 3
        res = pool.score("hang", [{"data": {}, "response": r} for r in ("ok", "hang", "ok")])
        assert [r.verdict for r in res] == ["ok", "timeout", "ok"]  # the zygote's wall_s, container kept
        assert pool.stats()["restarts"] == 0
    assert {c.id for c in client.containers.list(all=True, filters={"label": LABEL})} <= before


def test_killed_container_is_replaced_before_the_next_call(sandbox):
    """``proc.pid``/``poll()`` are Popen-like (SubprocessPool.pids); a container killed from outside is
    noticed at once and a warm replacement started without waiting for a call."""
    import os
    import signal

    c = sandbox.new_client()
    try:
        _load(c, "probe", PROBE)
        proc = c.proc
        assert proc.pid and proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)  # the container's PID 1 (tini), seen from the host
        assert _wait_for(lambda: proc.poll() is not None)
        assert proc.poll() == 137
        assert _wait_for(lambda: c._pending is not None and c._pending.done())  # replacement warm already
        assert proc.id not in _running(sandbox)
        _load(c, "probe", PROBE)
        assert _score(c, "probe", {}, "ok")["result"] == [1.0]
        assert c.proc is not proc and c.restarts == 0
    finally:
        c.close()


def test_a_worker_that_stops_reading_times_out(docker_daemon, sandbox_image):
    """A request the worker never reads (a hung process) ends in a timeout, never a blocked sender."""
    from envs.sandbox.docker_backend import DockerSandbox

    with DockerSandbox(base_url=docker_daemon[1], image=sandbox_image,
                       command=["python3", "-c", "import time; time.sleep(60)"]) as sb:
        proc = sb.start_container()
        t = time.monotonic()
        with pytest.raises(WorkerFailed) as e:
            proc.exchange('{"id": 1, "op": "ping", "pad": "%s"}' % ("x" * (16 << 20)), 1, 1.0)
        assert e.value.verdict == "timeout" and time.monotonic() - t < 3, e.value.error
    assert not docker_daemon[0].containers.list(all=True, filters={"label": f"evoforge.sandbox={sb.pool_id}"})
