"""A real, private ``dockerd`` for tests, and the sandbox image in it.

``private_dockerd()`` starts its own dockerd on a unix socket under /tmp/efd-*
(no iptables, no bridge, no IP forwarding: the host's networking and any other
Docker daemon are untouched; its own managed containerd and exec root), with
its data root under /var/lib/evoforge-test-docker (or $EVOFORGE_TEST_DOCKER_ROOT)
so images persist between runs, and stops it by its PID at the end.
``build_sandbox_image()`` runs docker/sandbox/build_image.sh in it: ~1 min the
first time on a machine (debootstrap), ~1 s later (only the envs/ layer).

The fixtures ``docker_daemon`` and ``sandbox_image`` (imported by the test
modules that use them) skip with the precise reason where this cannot work.

The first build needs the Debian mirror, which `make test` (tests in a private
network namespace) cannot reach; build the image once beforehand with
``python tests/envs/conftest_docker.py --build-image`` (as root).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "docker" / "sandbox" / "build_image.sh"
DATA_ROOT = Path(os.environ.get("EVOFORGE_TEST_DOCKER_ROOT", "/var/lib/evoforge-test-docker"))
RUNSC = shutil.which("runsc")
PREBUILD_HINT = "build it once beforehand, as root and with network: python tests/envs/conftest_docker.py --build-image"


class DockerUnavailable(Exception):
    """This machine cannot run the private dockerd or build the image (the message says why)."""


def _stop_pid(pid: int, proc: subprocess.Popen | None = None, grace_s: float = 20.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        elif not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait()


def _kill_stale_daemon(pidfile: Path, data_root: Path) -> None:
    """A dockerd left by a killed earlier run (same data root, so ours): stop it by its PID."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if not cmdline or not cmdline[0].endswith(b"dockerd") or f"--data-root={data_root}".encode() not in cmdline:
        return  # not ours: never touch another daemon
    _stop_pid(pid)


def _stop_leftovers(run: Path, grace_s: float = 10.0) -> None:
    """containerd and shims of *this* daemon (their command lines name its private exec root) must end."""
    def ours() -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if str(run).encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                        pids.append(int(entry))
                except OSError:
                    pass
        return pids
    deadline = time.monotonic() + grace_s
    while ours() and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in ours():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def private_dockerd(data_root: Path = DATA_ROOT, lock_wait_s: float = 300.0):
    """Yield (docker.DockerClient, base_url) of a dockerd private to the caller; raise DockerUnavailable."""
    try:
        import docker
    except ImportError:
        raise DockerUnavailable("the docker SDK is not installed (pip install 'docker>=7')") from None
    dockerd = shutil.which("dockerd") or next(
        (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if os.access(p, os.X_OK)), None)
    if dockerd is None:
        raise DockerUnavailable("dockerd is not installed "
                                "(apt-get install -y --no-install-recommends docker.io debootstrap)")
    if os.geteuid() != 0:
        raise DockerUnavailable("starting a private dockerd needs root (rootless Docker is not set up for these tests)")
    try:
        data_root.mkdir(parents=True, exist_ok=True)
        lock = open(data_root / "lock", "w")
    except OSError as e:
        raise DockerUnavailable(f"cannot use the test Docker data root {data_root}: {e}") from None
    with lock:
        deadline = time.monotonic() + lock_wait_s
        while True:  # one daemon per data root: wait for another session using it
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DockerUnavailable(f"{data_root} is held by another test session for over "
                                            f"{lock_wait_s:g} s") from None
                time.sleep(1)
        pidfile = data_root / "dockerd.pid"
        _kill_stale_daemon(pidfile, data_root / "data")
        run = Path(tempfile.mkdtemp(prefix="efd-", dir="/tmp"))  # short: containerd's socket path lives here
        try:
            with _serve(docker, dockerd, data_root, pidfile, run) as served:
                yield served
        finally:
            _stop_leftovers(run)
            shutil.rmtree(run, ignore_errors=True)


@contextlib.contextmanager
def _serve(docker, dockerd: str, data_root: Path, pidfile: Path, run: Path):
    sock = run / "docker.sock"
    base_url = f"unix://{sock}"
    config = {}
    if RUNSC:  # gVisor on the ptrace platform: needs no KVM
        config["runtimes"] = {"runsc": {"path": RUNSC, "runtimeArgs": ["--platform=ptrace", "--network=none"]}}
    (run / "daemon.json").write_text(json.dumps(config))
    log_path = run / "dockerd.log"
    proc = client = None
    tried = []
    for driver in ("overlay2", "vfs"):  # vfs where overlayfs is unavailable (slow, but works anywhere)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [dockerd, f"--host={base_url}", f"--data-root={data_root / 'data'}", f"--exec-root={run / 'exec'}",
                 f"--pidfile={pidfile}", f"--config-file={run / 'daemon.json'}", f"--storage-driver={driver}",
                 "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
                 "--bridge=none", "--userland-proxy=false"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        up_by = time.monotonic() + 60
        while time.monotonic() < up_by and proc.poll() is None:
            if sock.exists():
                try:
                    client = docker.DockerClient(base_url=base_url, timeout=120)
                    client.ping()
                    break
                except Exception:  # noqa: BLE001 - not serving yet
                    client = None
            time.sleep(0.1)
        if client is not None:
            break
        tried.append(driver)
        _stop_pid(proc.pid, proc)
    if client is None:
        tail = log_path.read_text(errors="replace")[-1500:]
        raise DockerUnavailable(f"dockerd did not come up (storage drivers tried: {', '.join(tried)}); "
                                f"log tail:\n{tail}")
    try:
        for c in client.containers.list(all=True, filters={"label": "evoforge.sandbox"}):
            c.remove(force=True)  # leftovers of an earlier, killed run in this private data root
        yield client, base_url
    finally:
        client.close()
        _stop_pid(proc.pid, proc)


def build_sandbox_image(base_url: str, image: str | None = None) -> str:
    """Build (or refresh) the sandbox image in the daemon at ``base_url``; return its tag.

    Raises DockerUnavailable where this machine cannot (no debootstrap, no root, the
    Debian mirror unreachable for the first build), RuntimeError on any other failure.
    """
    from envs.sandbox.docker_backend import default_image

    image = image or default_image()
    r = subprocess.run([str(BUILD), image], env={**os.environ, "DOCKER_HOST": base_url},
                       capture_output=True, text=True, timeout=900)
    if r.returncode in (2, 3):  # prerequisites missing / debootstrap failed (mirror unreachable?)
        raise DockerUnavailable(f"cannot build the sandbox base image: {r.stderr.strip()[-1500:]}\n"
                                f"({PREBUILD_HINT})")
    if r.returncode != 0:
        raise RuntimeError(f"build_image.sh failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return image


# -- pytest fixtures (import them into a test module) ------------------------------------------
try:
    import pytest
except ImportError:  # the --build-image CLI needs no pytest
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def docker_daemon():
        """(docker.DockerClient, base_url) of a dockerd private to the test module."""
        try:
            with private_dockerd() as served:
                yield served
        except DockerUnavailable as e:
            pytest.skip(str(e))

    @pytest.fixture(scope="module")
    def sandbox_image(docker_daemon):
        """The sandbox image (built by docker/sandbox/build_image.sh if missing, refreshed otherwise)."""
        t = time.monotonic()
        try:
            image = build_sandbox_image(docker_daemon[1])
        except DockerUnavailable as e:
            pytest.skip(str(e))
        except RuntimeError as e:
            pytest.fail(str(e))
        print(f"\n[docker] image {image} ready in {time.monotonic() - t:.1f} s")
        return image


def main(argv: list[str]) -> int:
    if argv != ["--build-image"]:
        print(__doc__.strip() + "\n\nusage: python tests/envs/conftest_docker.py --build-image", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    t = time.monotonic()
    try:
        with private_dockerd() as (_, base_url):
            image = build_sandbox_image(base_url)
    except DockerUnavailable as e:  # not an error: the docker tests will skip with this reason
        print(f"docker sandbox image not built: {e}", file=sys.stderr)
        return 0
    print(f"{image} ready in {DATA_ROOT} ({time.monotonic() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
