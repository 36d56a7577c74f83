"""What an episode family declares: one `Family` in its folder's family.py, one line in registry.py.

Declarations import nothing heavy: the config schema is built from them before any torch import. A family's
episodes and report section are imported when a run (or `evoforge report`) needs them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Family:
    name: str  # its folder under cluster/episodes/, and its config key episodes.<name>
    kinds: tuple[str, ...]  # the schedule names of its episodes
    episodes: Callable[[], tuple[type, ...]]  # imports and returns its Episode classes, one per kind
    # its settings: a dataclass with `check(cfg, policies, judges) -> list[str]` (one message per problem, naming the
    # key); at episodes.<name>, or at the top-level config group `group` (self-play: `selfplay`, conf/selfplay/)
    config: Optional[type] = None
    group: Optional[str] = None
    # whether a run uses the family (its settings are checked, its set-up runs); default: a kind of it is scheduled
    active: Optional[Callable[[Any, list[str]], bool]] = None
    # the schedule of a run that sets none, where this family decides it (self-play: k task steps, then evoenv)
    default_schedule: Optional[Callable[[Any], Optional[list[str]]]] = None
    # before the first step: what the family adds to the run's context (self-play: its library as the task source)
    setup: Optional[Callable[[Any], None]] = None
    # imports and returns its report section (summarize, format_summary, write_plots, html, step_parts, ...)
    report: Optional[Callable[[], Any]] = None
    # `evoforge <name> ...` commands of its own: (name and arguments, what it does) for `evoforge --help`, and a
    # function that imports and returns {name: main(argv) -> exit code}
    command_help: tuple[tuple[str, str], ...] = ()
    commands: Optional[Callable[[], dict[str, Callable[[list[str]], int]]]] = None

    @property
    def key(self) -> str:
        return self.group or f"episodes.{self.name}"

    def settings(self, cfg) -> Any:
        node = cfg
        for part in self.key.split("."):
            node = getattr(node, part)
        return node

    def is_active(self, cfg, pattern: list[str]) -> bool:
        if self.active is not None:
            return self.active(cfg, pattern)
        return any(kind in pattern for kind in self.kinds)
