"""Every episode family, one line each. The schedule's kinds, the `episodes.*` config groups, the checks, the
run's set-up and the report's sections are all read from here: adding a family is a folder and a line."""
from __future__ import annotations

from cluster.episodes.challenger.family import FAMILY as CHALLENGER
from cluster.episodes.cso.family import FAMILY as CSO
from cluster.episodes.delta_rubric.family import FAMILY as DELTA_RUBRIC
from cluster.episodes.distill.family import FAMILY as DISTILL
from cluster.episodes.family import Family
from cluster.episodes.memory.family import FAMILY as MEMORY
from cluster.episodes.propose_critic.family import FAMILY as PROPOSE_CRITIC
from cluster.episodes.selfplay.family import FAMILY as SELFPLAY
from cluster.episodes.task.family import FAMILY as TASK

FAMILIES: dict[str, Family] = {f.name: f for f in (
    TASK,
    SELFPLAY,
    DISTILL,
    PROPOSE_CRITIC,
    DELTA_RUBRIC,
    CHALLENGER,
    MEMORY,
    CSO,
)}


def kind_names() -> list[str]:
    """Every schedulable kind, in the registry's order (nothing imported)."""
    return [kind for family in FAMILIES.values() for kind in family.kinds]


def family_of(kind: str) -> Family:
    return next(f for f in FAMILIES.values() if kind in f.kinds)


def episode_kinds() -> dict[str, type]:
    """kind -> Episode class, for every family (imports every family's episodes)."""
    out = {}
    for family in FAMILIES.values():
        classes = {e.kind: e for e in family.episodes()}
        out.update({kind: classes[kind] for kind in family.kinds})
    return out


def build(kind: str, ctx):
    if kind not in kind_names():
        raise ValueError(f"unknown episode kind {kind!r}: use {', '.join(kind_names())}")
    classes = {e.kind: e for e in family_of(kind).episodes()}
    return classes[kind](ctx)


def active_families(cfg, pattern: list[str]) -> list[Family]:
    return [f for f in FAMILIES.values() if f.is_active(cfg, pattern)]


def default_pattern(cfg) -> list[str]:
    """A run without `schedule`: what a family decides (self-play: generator_every task steps, then evoenv), or
    task every step."""
    for family in FAMILIES.values():
        if family.default_schedule is not None and (pattern := family.default_schedule(cfg)):
            return pattern
    return ["task"]


def commands() -> dict:
    """`evoforge <name>` commands the families add: name -> main(argv) (imports each family's)."""
    out = {}
    for family in FAMILIES.values():
        if family.commands is not None:
            out.update(family.commands())
    return out


def command_help() -> list[tuple[str, str]]:
    return [line for family in FAMILIES.values() for line in family.command_help]


def report_sections() -> dict:
    """family name -> its report section (a module: summarize, format_summary, write_plots, html, key_figures,
    step_parts; optionally OWN_PLOTS, PAIRS_KEY), in the registry's order; families without one are left out."""
    return {name: family.report() for name, family in FAMILIES.items() if family.report is not None}
