"""The bubblewrap backend: each pool worker is a zygote inside its own bwrap sandbox.

The sandbox has an empty network namespace (no network at all, not even the
host's loopback), its own PID namespace, a read-only view of the system and
of the Python install only (not the project, not /etc, not any home), a
size-capped tmpfs /tmp, a clean environment, and dies with its parent.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from envs.sandbox.limits import Limits

ENVS_DIR = Path(__file__).resolve().parent.parent  # the `envs` package, mounted read-only at /opt/evoforge/envs
INSIDE = "/opt/evoforge"


@functools.lru_cache(maxsize=1)
def available() -> str | None:
    """None when bubblewrap works here, else the reason it does not, in one line.

    Installed is not enough: a container without user namespaces or a broken binary fails only when a
    sandbox starts, so this starts one (the real argv, ~50 ms) and runs the interpreter in it."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed (Debian package: bubblewrap)"
    argv = bwrap_argv(Limits())[:-3] + ["-c", "print('sandbox ok')"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={})
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap is installed but cannot start a sandbox here ({type(e).__name__}: {e})"
    if proc.returncode != 0 or "sandbox ok" not in proc.stdout:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit code {proc.returncode}"
        return (f"bubblewrap is installed but cannot start a sandbox here ({detail}; a container without user "
                "namespaces needs --privileged)")
    return None


def _python_paths() -> list[str]:
    """Folders the interpreter needs: its install prefix and, for trusted extra imports, the venv."""
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    return sorted(paths)


def bwrap_argv(limits: Limits) -> list[str]:
    argv = [shutil.which("bwrap") or "bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--clearenv",
            "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/") / link
        if target.is_symlink():
            argv += ["--symlink", os.readlink(target), f"/{link}"]
        elif target.exists():
            argv += ["--ro-bind", str(target), f"/{link}"]
    # /tmp first: a Python install or venv under /tmp is then bound inside it, not hidden by it
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(limits.tmp_mb << 20), "--tmpfs", "/tmp"]
    for path in _python_paths():
        # bwrap makes missing parents 0700: open them (empty, path only) so the task's uid can read
        # the interpreter, its stdlib and the trusted extra imports' data files
        for parent in reversed(Path(path).parents[:-1]):
            if str(parent) != "/tmp":
                argv += ["--perms", "0755", "--dir", str(parent)]
        argv += ["--ro-bind", path, path]
    argv += ["--ro-bind", str(ENVS_DIR), f"{INSIDE}/envs",
             "--setenv", "PYTHONPATH", INSIDE, "--setenv", "HOME", "/tmp",
             "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "PYTHONHASHSEED", "0",
             "--setenv", "EVOFORGE_OWN_PID_NAMESPACE", "1",
             "--chdir", "/tmp",
             sys.executable, "-s", "-m", "envs.sandbox.zygote"]
    return argv
