"""Dead actors and their replacements, for pools that keep one actor per placement bundle.

A pool holds its actors in a list, the actor in slot i on bundle i. `Replacements(start)` kills what is left of
the actor in a slot, starts a new one there with the pool's own `start(i)` and counts it; the pool decides when
(an error in DEAD, a timeout) and which work it issues again.
"""
from __future__ import annotations

from typing import Any, Callable

import ray

DEAD = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError)  # what a call to a dead actor raises


def kill(actor) -> None:
    """End an actor; one already gone (or None) is fine."""
    if actor is None:
        return
    try:
        ray.kill(actor)
    except Exception:  # already gone
        pass


class Replacements:
    def __init__(self, start: Callable[[int], Any]):
        self.start = start
        self.count = 0  # actors started in place of others

    def replace(self, actors: list, i: int, then: Callable[[Any], None] | None = None) -> Any:
        """A new actor in slot i in place of the old one; `then(actor)` readies it (e.g. loads the current
        weights) before it counts as a replacement."""
        kill(actors[i])
        actors[i] = actor = self.start(i)
        if then is not None:
            then(actor)
        self.count += 1
        return actor

    def call(self, actors: list, i: int, method: str, *args, retries: int) -> Any:
        """The result of `method(*args)` on slot i's actor; when the actor is dead it is replaced and the call
        made again, `retries` times at most (then the error is raised)."""
        for attempt in range(retries + 1):
            try:
                return ray.get(getattr(actors[i], method).remote(*args))
            except DEAD:
                if attempt == retries:
                    raise
                self.replace(actors, i)
