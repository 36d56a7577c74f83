"""Reasoning Gym (https://github.com/open-thought/reasoning-gym) datasets as EvoForge environments.

Each dataset becomes an environment source text (see reasoning_gym_template.py
for its instance, difficulty and scoring rules), run like any other
environment inside a worker process. Tuned for reasoning-gym 0.1.25.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path

from envs.registry import UnknownEnvironmentError

TEMPLATE_PATH = Path(__file__).resolve().parent / "reasoning_gym_template.py"
PREFIX = "rg_"


class UnknownDatasetError(UnknownEnvironmentError):
    """Not a (supported) Reasoning Gym dataset; the message suggests close names."""


# Datasets whose answers span several lines: they use the "fenced" format.
MULTILINE = frozenset({
    "arc_agi", "binary_matrix", "futoshiki", "kakurasu", "manipulate_matrix",
    "mini_sudoku", "modulo_grid", "n_queens", "pool_matrix", "rearc", "rotate_matrix",
    "sudoku", "survo", "tower_of_hanoi"})
# Highest usable curriculum level (above it the upstream config is invalid, or
# generation fails or takes seconds); -1: ignore the curriculum (no level works).
MAX_LEVEL = {"caesar_cipher": 1, "jugs": 1, "knight_swap": -1, "rubiks_cube": 3, "survo": 1,
             "zebra_puzzles": 4}
# Registered datasets that cannot be used as they are, with the reason.
UNSUPPORTED = {
    "composite": "a mixture of other datasets; it needs an explicit dataset config",
    "game_of_life_halting": "its score_answer gives 1.0 to any non-empty answer (upstream bug)",
}


def list_datasets() -> list[str]:
    """Sorted names of the usable Reasoning Gym datasets."""
    from reasoning_gym.factory import DATASETS
    return sorted(n for n in DATASETS if n not in UNSUPPORTED)


def reasoning_gym_source(dataset: str) -> str:
    """Environment source text for one Reasoning Gym dataset (checked to exist)."""
    if dataset not in list_datasets():
        raise UnknownDatasetError(_unknown_message(dataset))
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    fmt = "fenced" if dataset in MULTILINE else "final_line"
    for const, value in (("DATASET", dataset), ("ANSWER_FORMAT", fmt),
                         ("MAX_LEVEL", MAX_LEVEL.get(dataset))):
        text, n = re.subn(rf"^{const} = .*$", lambda _: f"{const} = {value!r}", text,
                          count=1, flags=re.MULTILINE)
        if n != 1:
            raise RuntimeError(f"{TEMPLATE_PATH.name}: no '{const} = ...' line to substitute")
    return text


def resolve(name: str) -> tuple[str, str]:
    """(environment name "rg_<dataset>", source) for ``name`` given with or without the prefix."""
    dataset = name[len(PREFIX):] if name.startswith(PREFIX) else name
    return PREFIX + dataset, reasoning_gym_source(dataset)


def _unknown_message(dataset: str) -> str:
    if dataset in UNSUPPORTED:
        return f"Reasoning Gym dataset {dataset!r} is not supported: {UNSUPPORTED[dataset]}"
    names = list_datasets()
    close = difflib.get_close_matches(dataset, names, n=5, cutoff=0.5)
    hint = (f"did you mean {', '.join(close)}?" if close
            else f"{len(names)} available, e.g. {', '.join(names[:5])}")
    return (f"unknown Reasoning Gym dataset {dataset!r}; {hint} "
            "(all: envs.adapters.reasoning_gym.list_datasets())")
