"""Sandboxes for untrusted environment code, behind one pool interface.

Backends: "bwrap" (default where bubblewrap exists), "docker" (for clusters),
"process" (plain subprocesses: NOT isolated, for machines without either).
"""
from __future__ import annotations

import sys
import warnings

from envs.sandbox.limits import ALLOWED_IMPORTS, VERDICTS, Limits

BACKENDS = ("auto", "bwrap", "docker", "process")


class SandboxUnavailable(RuntimeError):
    pass


def resolve_backend(name: str) -> str:
    from envs.sandbox import bwrap

    if name not in BACKENDS:
        raise SandboxUnavailable(f"sandbox backend {name!r}: use one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "bwrap" if bwrap.available() is None else "process"
    if name == "bwrap" and (why := bwrap.available()):
        raise SandboxUnavailable(why)
    return name


def make_pool(backend: str, size: int, limits: Limits | None = None):
    """A SubprocessPool whose workers run in the chosen sandbox."""
    from envs.pool import SubprocessPool

    limits = limits or Limits()
    backend = resolve_backend(backend)
    backstop = limits.wall_s + 10.0  # the zygote enforces wall_s; this only catches a stuck zygote
    init = [{"op": "limits", "limits": limits.to_dict()}]
    if backend == "bwrap":
        from envs.sandbox.bwrap import bwrap_argv

        return SubprocessPool(size, argv=bwrap_argv(limits), timeout_s=backstop, env={}, init_requests=init,
                              isolated=True)
    if backend == "docker":
        from envs.sandbox.docker_backend import make_docker_pool

        return make_docker_pool(size, limits, backstop, init)
    warnings.warn("sandbox backend 'process': environment code runs as a plain process, NOT isolated",
                  stacklevel=2)
    return SubprocessPool(size, argv=[sys.executable, "-m", "envs.sandbox.zygote"], timeout_s=backstop,
                          init_requests=init, isolated=False)


__all__ = ["ALLOWED_IMPORTS", "BACKENDS", "Limits", "SandboxUnavailable", "VERDICTS", "make_pool", "resolve_backend"]
