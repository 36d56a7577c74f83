"""Ends an embedded Ray cluster when the driver that started it ends, however it ends.

`python -m cluster.runtime.reaper DRIVER_PID CLUSTER_ID` is started by `cluster.runtime.session.start_ray` as a child of the
driver, in a session of its own (a terminal hangup or Ctrl-C does not reach it), before `ray.init`. Every
process of that embedded cluster (gcs_server, raylet, the dashboard and runtime-env agents, the log monitor,
workers and whatever they start) inherits `EVOFORGE_CLUSTER_ID=CLUSTER_ID` in its environment. The reaper
waits for the driver to exit (a pidfd: immune to PID reuse), then signals every process whose
/proc/PID/environ holds that exact entry: SIGTERM, a short grace, SIGKILL, and again while new ones show up.
Then it exits. It signals nothing without the entry, and deletes nothing. After a clean exit (ray.shutdown
already stopped the cluster) it finds nothing and simply exits.

Stdlib only, so it starts in milliseconds and never imports Ray.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time

MARKER = "EVOFORGE_CLUSTER_ID"
GRACE_S = 3.0  # after SIGTERM, before SIGKILL
ROUNDS = 5  # scans after the driver's exit (a process may start while the others are being stopped)


def entry(cluster_id: str) -> bytes:
    return f"{MARKER}={cluster_id}".encode()


def carries(pid: int, marker: bytes) -> bool:
    """Whether /proc/PID/environ holds exactly `marker` (False when the process is gone, a zombie, or unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


def find(marker: bytes) -> list[int]:
    """PIDs of the live processes that carry the marker."""
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:  # not Linux: nothing to find
        return []
    return [int(name) for name in names if name.isdigit() and int(name) != me and carries(int(name), marker)]


NO_PIDFD = -1


def _pin(pid: int, marker: bytes) -> int | None:
    """A handle on `pid` that cannot hit a reused PID: a pidfd, opened before the marker is checked.

    NO_PIDFD where pidfds are unsupported (Python < 3.9, Linux < 5.3); None when gone or not marked."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except (AttributeError, OSError):
        return NO_PIDFD if carries(pid, marker) else None
    if carries(pid, marker):
        return fd
    os.close(fd)
    return None


def _send(pid: int, fd: int, sig: int, marker: bytes) -> None:
    try:
        if fd != NO_PIDFD:
            signal.pidfd_send_signal(fd, sig)
        elif carries(pid, marker):  # without a pidfd, check again just before
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _exited(pidfd: int, timeout_ms: int | None) -> bool:
    """A pidfd turns readable once its process has exited (a zombie included)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(timeout_ms))


def _alive(pid: int, fd: int) -> bool:
    if fd != NO_PIDFD:
        return not _exited(fd, 0)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _wait(handles: dict[int, int], deadline: float) -> dict[int, int]:
    """The handles still alive at the deadline (returns as soon as none is)."""
    while True:
        handles = {pid: fd for pid, fd in handles.items() if _alive(pid, fd)}
        if not handles or time.monotonic() >= deadline:
            return handles
        time.sleep(0.05)


def reap(cluster_id: str, grace_s: float = GRACE_S, rounds: int = ROUNDS) -> list[int]:
    """Stop every process that carries the cluster's marker; returns the PIDs signalled."""
    marker = entry(cluster_id)
    signalled: list[int] = []
    for _ in range(rounds):
        handles = {pid: fd for pid in find(marker) if (fd := _pin(pid, marker)) is not None}
        if not handles:
            break
        signalled.extend(handles)
        try:
            left = handles
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for pid, fd in left.items():
                    _send(pid, fd, sig, marker)
                left = _wait(left, time.monotonic() + grace_s)
                if not left:
                    break
        finally:
            for fd in handles.values():
                if fd != NO_PIDFD:
                    os.close(fd)
    return signalled


def wait_for_exit(driver_pid: int) -> None:
    """Block until the driver, this process's parent, has exited."""
    try:
        fd = os.pidfd_open(driver_pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd: watch for being reparented
        while os.getppid() == driver_pid:
            time.sleep(0.5)
        return
    try:
        # The driver started us: another parent means it has exited already (and the PID may be reused)
        if os.getppid() == driver_pid:
            _exited(fd, None)
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0].isdigit() or not argv[1]:
        print("usage: python -m cluster.runtime.reaper DRIVER_PID CLUSTER_ID", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    wait_for_exit(int(argv[0]))
    reap(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
