"""Choosing a sandbox backend and making a pool of sandboxed workers (see the package's docstring)."""
from __future__ import annotations

import shutil
import sys
import tempfile
import warnings

from envs.errors import SandboxUnavailable
from envs.sandbox.limits import Limits

BACKENDS = ("auto", "bwrap", "docker", "process")
HOW_TO_ISOLATE = ("install bubblewrap (as root: apt-get install -y --no-install-recommends bubblewrap; `make run` "
                  "does it) or start Docker and set env.sandbox.backend=docker")


def resolve_backend(name: str, allow_unisolated: bool = False) -> str:
    """The backend that will run environment code, or SandboxUnavailable before any code runs."""
    from envs.sandbox import bwrap

    if name not in BACKENDS:
        raise SandboxUnavailable(f"sandbox backend {name!r}: use one of {', '.join(BACKENDS)}")
    if name == "process":
        if not allow_unisolated:
            raise SandboxUnavailable(
                "env.sandbox.backend=process runs model-written environment code as a plain process, NOT isolated; "
                "add env.sandbox.allow_unisolated=true to accept that, or " + HOW_TO_ISOLATE)
        return name
    if name in ("auto", "bwrap") and (why := bwrap.available()):
        hint = HOW_TO_ISOLATE if shutil.which("bwrap") is None else "use Docker instead: start it and set env.sandbox.backend=docker"
        raise SandboxUnavailable(f"no sandbox for environment code: {why}; {hint}")
    return "bwrap" if name == "auto" else name


def make_pool(backend: str, size: int, limits: Limits | None = None, allow_unisolated: bool = False):
    """A SubprocessPool whose workers run in the chosen sandbox."""
    from envs.pool import SubprocessPool

    limits = limits or Limits()
    backend = resolve_backend(backend, allow_unisolated)
    backstop = limits.wall_s + 10.0  # the zygote enforces wall_s; this only catches a stuck zygote
    init = [{"op": "limits", "limits": limits.to_dict()}]
    if backend == "bwrap":
        from envs.sandbox.bwrap import bwrap_argv

        return SubprocessPool(size, argv=bwrap_argv(limits), timeout_s=backstop, env={}, init_requests=init,
                              isolated=True)
    if backend == "docker":
        from envs.sandbox.docker_backend import make_docker_pool

        return make_docker_pool(size, limits, backstop, init)
    warnings.warn("sandbox backend 'process' (env.sandbox.allow_unisolated=true): environment code runs as a "
                  "plain process, NOT isolated", stacklevel=2)
    scratch = tempfile.mkdtemp(prefix="evoforge-unisolated-")  # a clean environment: no secrets inherited
    return SubprocessPool(size, argv=[sys.executable, "-m", "envs.sandbox.zygote"], timeout_s=backstop,
                          env={"HOME": scratch, "TMPDIR": scratch, "PYTHONDONTWRITEBYTECODE": "1"},
                          init_requests=init, isolated=False, on_close=lambda: shutil.rmtree(scratch, True))

