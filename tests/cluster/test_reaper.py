"""cluster.runtime.reaper: an embedded Ray cluster ends with the driver that started it, however the driver ends
(SIGKILL included), and nothing else is touched: not unmarked processes, not a cluster the driver joined."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from cluster.runtime import reaper
ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 30.0


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def marked(cluster_id: str) -> set[int]:
    return set(reaper.find(reaper.entry(cluster_id)))


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def touching(path: str) -> set[int]:
    """Live processes (not this one) with `path` in their command line or a file under it open."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        pid = int(name)
        hit = path in cmdline(pid)
        if not hit:
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(path):
                        hit = True
                        break
                except OSError:
                    pass
        if hit and alive(pid):
            found.add(pid)
    return found


def wait_until(condition, timeout: float = DEADLINE_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.2)


def stop(pids) -> None:
    """Test cleanup: end the given processes (ours) by PID."""
    pids = [p for p in pids if alive(p)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.1)
        pids = [p for p in pids if alive(p)]


def sleeper(env_extra: dict | None = None, drop: str | None = reaper.MARKER) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != drop}
    env.update(env_extra or {})
    return subprocess.Popen(["sleep", "600"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def read_json_line(path: Path, proc: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        for line in text.splitlines():
            if line.startswith("{"):
                return json.loads(line)
        if proc.poll() is not None:
            raise AssertionError(f"driver exited with {proc.returncode}:\n{text[-4000:]}")
        time.sleep(0.2)
    raise AssertionError(f"driver not ready in {timeout}s:\n{path.read_text()[-4000:] if path.exists() else ''}")


# ---------------------------------------------------------------- the reaper on plain processes

PARENT = textwrap.dedent("""
    import json, os, subprocess, sys, time
    cid, mode = sys.argv[1], sys.argv[2]
    reaper = subprocess.Popen([sys.executable, "-m", "cluster.runtime.reaper", str(os.getpid()), cid],
                              stdin=subprocess.DEVNULL, start_new_session=True)
    env = dict(os.environ, EVOFORGE_CLUSTER_ID=cid)
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    plain = subprocess.Popen(["sleep", "600"], env=env, **quiet)
    # ignores SIGTERM: needs the SIGKILL after the grace
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('up', flush=True); time.sleep(600)"],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    stubborn.stdout.readline()
    # a grandchild inherits the marker; its parent (the sh) is killed too
    r, w = os.pipe()
    tree = subprocess.Popen(["sh", "-c", f"sleep 600 & echo $! >&{w}; wait"], env=env, pass_fds=(w,), **quiet)
    os.close(w)
    grandchild = int(os.read(r, 64))
    kids = {"plain": plain.pid, "stubborn": stubborn.pid, "tree": tree.pid, "grandchild": grandchild}
    print(json.dumps({"reaper": reaper.pid, "marked": kids}), flush=True)
    if mode == "wait":
        time.sleep(600)
""")


def start_parent(tmp_path, cid: str, mode: str):
    out = tmp_path / f"parent-{mode}.out"
    with open(out, "w") as f:
        proc = subprocess.Popen([sys.executable, "-c", PARENT, cid, mode], cwd=ROOT, stdout=f,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, read_json_line(out, proc, timeout=30)


def test_reaper_kills_marked_processes_when_the_parent_is_killed(tmp_path):
    cid = uuid.uuid4().hex
    unmarked = sleeper()
    near_miss = sleeper({reaper.MARKER: cid + "0"})  # another id that merely starts with this one
    other = sleeper({reaper.MARKER: uuid.uuid4().hex})
    parent, info = start_parent(tmp_path, cid, "wait")
    kids = set(info["marked"].values())
    try:
        assert kids <= marked(cid) and all(alive(p) for p in kids)
        assert alive(info["reaper"])  # waits for the parent, kills nothing meanwhile
        time.sleep(0.5)
        assert all(alive(p) for p in kids)
        parent.kill()
        parent.wait()
        wait_until(lambda: not any(alive(p) for p in kids), what=f"marked processes {kids} ended")
        wait_until(lambda: not alive(info["reaper"]), what="the reaper exited")
        assert not marked(cid)
        assert alive(unmarked.pid) and alive(near_miss.pid) and alive(other.pid)
    finally:
        stop([parent.pid, info["reaper"], *kids, unmarked.pid, near_miss.pid, other.pid])
        for p in (unmarked, near_miss, other):
            p.wait()


def test_reaper_exits_after_a_normal_exit(tmp_path):
    cid = uuid.uuid4().hex
    unmarked = sleeper()
    parent, info = start_parent(tmp_path, cid, "exit")
    kids = set(info["marked"].values())
    try:
        assert parent.wait(timeout=30) == 0
        wait_until(lambda: not alive(info["reaper"]), what="the reaper exited after its parent's clean exit")
        assert not any(alive(p) for p in kids)  # the parent left them behind: they go too
        assert alive(unmarked.pid)
    finally:
        stop([info["reaper"], *kids, unmarked.pid])
        unmarked.wait()


def test_reaper_whose_driver_is_gone_touches_nothing_else():
    """Started for a PID that is not (or no longer) its parent, e.g. reused: it reaps its own marker only."""
    stranger = sleeper()
    cid = uuid.uuid4().hex
    try:
        proc = subprocess.run([sys.executable, "-m", "cluster.runtime.reaper", str(stranger.pid), cid], cwd=ROOT,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert alive(stranger.pid)
        assert subprocess.run([sys.executable, "-m", "cluster.runtime.reaper"], cwd=ROOT, capture_output=True,
                              timeout=30).returncode == 2
    finally:
        stop([stranger.pid])
        stranger.wait()


# ---------------------------------------------------------------- a real driver and its embedded cluster

DRIVER = textwrap.dedent("""
    import json, os, subprocess, sys, time
    import ray
    from cluster.runtime import session
    from cluster.config.schema import ClusterConfig

    address = sys.argv[1] if len(sys.argv) > 1 else None
    session.start_ray(ClusterConfig(address=address, num_cpus=2))

    @ray.remote
    class Spawner:  # a worker that starts a process of its own, as environment executors do
        def start(self):
            return os.getpid(), subprocess.Popen(["sleep", "600"]).pid

    spawner = Spawner.remote()
    worker, grandchild = ray.get(spawner.start.remote())
    node = ray._private.worker.global_worker.node
    print(json.dumps({"cluster_id": session._cluster_id, "reaper": session._reaper and session._reaper.pid,
                      "session_dir": node.get_session_dir_path(), "worker": worker,
                      "grandchild": grandchild}), flush=True)
    if os.environ.get("DRIVER_MODE") == "exit":
        session.stop_ray()
        print("stopped", flush=True)
    else:
        time.sleep(600)
""")


@pytest.fixture
def ray_tmp():
    """A RAY_TMPDIR of this test's own (short: Ray's socket paths have a length limit)."""
    base = Path(tempfile.mkdtemp(prefix="efreap-", dir="/tmp"))
    (base / "t").mkdir()
    yield base
    for _ in range(3):  # what a test left (a joined cluster, which nothing else stops)
        stop(touching(str(base / "t")))
    shutil.rmtree(base, ignore_errors=True)


def start_driver(base: Path, *args: str, mode: str = "wait"):
    env = dict(os.environ, RAY_TMPDIR=str(base / "t"), DRIVER_MODE=mode, PYTHONPATH=str(ROOT))
    env.pop(reaper.MARKER, None)
    out = base / f"driver-{mode}-{len(list(base.glob('driver-*')))}.out"
    with open(out, "w") as f:
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, *args], cwd=ROOT, env=env, stdout=f,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, read_json_line(out, proc), out


@pytest.mark.e2e
def test_sigkilled_driver_leaves_no_ray_process(ray_tmp):
    tmp = str(ray_tmp / "t")
    unmarked = sleeper()
    driver, info, _ = start_driver(ray_tmp)
    cid = info["cluster_id"]
    near_miss = sleeper({reaper.MARKER: cid + "0"})
    try:
        assert cid and info["reaper"] and info["session_dir"].startswith(tmp)
        cluster = marked(cid)
        titles = " | ".join(cmdline(p) for p in cluster)
        for name in ("gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::Spawner"):
            assert name in titles, titles
        assert {info["worker"], info["grandchild"]} <= cluster
        # every process of the cluster (found by its temp dir) carries the marker: setproctitle kept it
        assert touching(tmp) - {driver.pid} <= cluster, [cmdline(p) for p in touching(tmp) - cluster]
        assert info["reaper"] not in cluster and driver.pid not in cluster

        driver.kill()
        driver.wait()
        wait_until(lambda: not marked(cid) and not touching(tmp),
                   what=f"the cluster's processes ended: {[cmdline(p) for p in marked(cid) | touching(tmp)]}")
        wait_until(lambda: not alive(info["reaper"]), what="the reaper exited")
        assert alive(unmarked.pid) and alive(near_miss.pid)
    finally:
        stop([driver.pid, unmarked.pid, near_miss.pid])
        unmarked.wait()
        near_miss.wait()


@pytest.mark.e2e
def test_clean_exit_stays_clean(ray_tmp):
    tmp = str(ray_tmp / "t")
    driver, info, out = start_driver(ray_tmp, mode="exit")
    assert driver.wait(timeout=120) == 0, out.read_text()[-4000:]
    text = out.read_text()
    assert "stopped" in text and "Traceback" not in text, text[-4000:]
    wait_until(lambda: not alive(info["reaper"]), what="the reaper exited after the driver's clean exit")
    wait_until(lambda: not marked(info["cluster_id"]) and not touching(tmp),
               what=f"nothing left: {[cmdline(p) for p in touching(tmp)]}")


@pytest.mark.e2e
def test_joining_a_cluster_kills_nothing_of_it(ray_tmp):
    tmp = str(ray_tmp / "t")
    env = dict(os.environ, RAY_TMPDIR=tmp)
    env.pop(reaper.MARKER, None)
    ray_cli = str(Path(sys.executable).with_name("ray"))
    head = subprocess.run([ray_cli, "start", "--head", "--num-cpus=2", "--include-dashboard=false",
                           "--node-ip-address=127.0.0.1", "--port=0", "--disable-usage-stats"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert head.returncode == 0, head.stdout[-3000:] + head.stderr[-3000:]
    system = {p for p in touching(tmp) if not cmdline(p).startswith("ray::")
              or cmdline(p).startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent"))}
    names = " | ".join(cmdline(p) for p in system)
    assert "gcs_server" in names and "raylet" in names, names

    driver, info, _ = start_driver(ray_tmp, "auto")
    assert info["reaper"] is None and info["cluster_id"] is None
    driver.kill()
    driver.wait()
    time.sleep(8)  # longer than a reaper would need
    assert all(alive(p) for p in system), [cmdline(p) for p in system if not alive(p)]
