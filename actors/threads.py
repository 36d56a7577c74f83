"""How many torch threads an actor on a CPU node uses."""
from __future__ import annotations

import os


def node_cores() -> int:
    """The cores this process may run on (its CPU affinity, not every core of the host)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_threads(configured: int, share: int) -> int:
    """`configured` when set (> 0); else the node's cores split evenly among the `share` processes that
    compute at the same time (e.g. learner ranks, plus rollout workers when rollouts overlap the update)."""
    return configured if configured > 0 else max(1, node_cores() // max(share, 1))
