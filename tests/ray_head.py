"""A real Ray head on loopback that tests start and stop by PID, and the one head a pytest run shares.

End-to-end runs join the shared head (`cluster.address=...`) instead of starting an embedded cluster each:
see the Tests section of the README for what an end-to-end test may cost and how it joins.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cluster.runtime.reaper import MARKER as REAPER_MARKER
from cluster.runtime.reaper import find

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
MARKER = "EVOFORGE_TEST_RAY_HEAD"  # set for a head only: every process it starts inherits it
SHARED_CPUS = 8  # the largest run of the suite (two policies, two learner ranks each) fits


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_with(marker: str) -> list[int]:
    """PIDs of the processes whose environment holds `marker` ("NAME=value")."""
    return find(marker.encode())


@dataclass
class Head:
    gcs: str        # host:port that drivers join (cluster.address)
    dashboard: str  # http://host:port: the job server and the state API
    token: str
    marker: str     # "NAME=value" in the environment of every process of the head

    def client_env(self) -> dict:
        """An environment for a process that talks to this head (token authentication)."""
        env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token)
        env.pop("RAY_ADDRESS", None)
        return env


@contextlib.contextmanager
def ray_head(tmp: Path, token: str, marker_value: str, num_cpus: int = 4, extra_env: dict | None = None):
    """`ray start --head --block` on 127.0.0.1 with the dashboard (job server), token authentication and
    `num_cpus` CPUs, its processes' environment changed by `extra_env` (a value None removes the key);
    yields a Head. On exit the head is stopped by its PID (SIGTERM, then its group)."""
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",  # a job's `python` is the venv's
               RAY_TMPDIR=str(tmp), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0")
    env.update({k: v for k, v in (extra_env or {}).items() if v is not None})
    for key in [k for k, v in (extra_env or {}).items() if v is None]:
        env.pop(key, None)
    env[MARKER] = marker_value
    env.pop("RAY_ADDRESS", None)
    gcs_port, dash_port = free_port(), free_port()
    # every listener on a port of its own: Ray's fixed defaults (the dashboard agent's 52365, the client
    # server's 10001, ...) collide between two heads on one machine, and the second head's job agent is lost
    ports = [f"--{name}={free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                    "runtime-env-agent-port", "metrics-export-port",
                                                    "ray-client-server-port")]
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs_port),
           "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash_port), *ports, "--num-cpus", str(num_cpus),
           "--temp-dir", str(tmp / "ray"), "--disable-usage-stats", "--block"]
    with (tmp / "head.log").open("w") as log:
        head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, "the Ray head exited:\n" + (tmp / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the dashboard did not come up:\n" + (tmp / "head.log").read_text()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{dash_port}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:  # 401 without a token: up, and authenticating
                break
            except OSError:
                time.sleep(0.5)
        yield Head(f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dash_port}", token, f"{MARKER}={marker_value}")
    finally:
        # `ray start --block` stops its processes in order on SIGTERM; signalling the whole group at
        # once makes the raylet wait for the GCS it lost. Then whatever is left in the group goes.
        head.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()


# ------------------------------------------------------------------ the head one pytest run shares

_shared: Head | None = None
_stack = contextlib.ExitStack()
# This process (ray_local, in-process drivers, the leftover check) authenticates like every client of the
# shared head. Ray reads these once, so they are set before anything imports ray, for the head started later.
_TOKEN = secrets.token_hex(32)
os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=_TOKEN)


def started() -> bool:
    return _shared is not None


def shared_head() -> Head:
    """The pytest run's Ray head, started at the first call (a run of unit tests alone starts none) and
    stopped at the end of the run (stop_shared_head, from pytest_sessionfinish)."""
    global _shared
    if _shared is None:
        tmp = Path(tempfile.mkdtemp(prefix="evoforge-head-"))  # short: Ray's socket paths fit in 107 bytes
        _stack.callback(shutil.rmtree, tmp, True)
        # the workers import the project from the checkout, as an embedded cluster's do
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        # if this process is killed before it can stop the head, cluster.runtime.reaper ends every process of it
        # (they all carry the reaper's marker), as it does for an embedded cluster whose driver was killed
        cluster_id = secrets.token_hex(8)
        subprocess.Popen([sys.executable, "-E", "-s", "-m", "cluster.runtime.reaper", str(os.getpid()), cluster_id],
                         cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        _shared = _stack.enter_context(ray_head(tmp, _TOKEN, secrets.token_hex(8), SHARED_CPUS,
                                                {"PYTHONPATH": path, REAPER_MARKER: cluster_id}))
    return _shared


def stop_shared_head() -> list[int]:
    """Stop the shared head; the PIDs of its processes still running after 20 s (killed), if any."""
    global _shared
    if _shared is None:
        return []
    marker = _shared.marker
    _stack.close()
    _shared = None
    return reap(marker)


def reap(marker: str) -> list[int]:
    """After a head has stopped: the PIDs of its processes (environment holds `marker`) still running after
    20 s, killed; the head's workers leave once their raylet is gone."""
    leftover = []
    for _ in range(40):
        leftover = processes_with(marker)
        if not leftover:
            break
        time.sleep(0.5)
    for pid in leftover:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return leftover


def live_resources(head: Head, exclude_job: str | None = None) -> tuple[list, list]:
    """The actors still alive and the placement groups still reserved on `head` (the state API), except
    those of the job `exclude_job` (hex id)."""
    from ray.util.state import list_actors, list_placement_groups

    actors = [a for a in list_actors(address=head.dashboard, filters=[("state", "=", "ALIVE")],
                                     raise_on_missing_output=False) if a.job_id != exclude_job]
    groups = [g for g in list_placement_groups(address=head.dashboard, filters=[("state", "!=", "REMOVED")],
                                               raise_on_missing_output=False) if g.creator_job_id != exclude_job]
    return actors, groups
