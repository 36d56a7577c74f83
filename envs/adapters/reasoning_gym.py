"""Reasoning Gym (https://github.com/open-thought/reasoning-gym) datasets as EvoForge environments.

Each dataset becomes an environment source text (see reasoning_gym_template.py
for its instance, difficulty and scoring rules), run like any other
environment inside a worker process. Tuned for reasoning-gym 0.1.25.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path

from envs.errors import UnknownEnvironmentError

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


class DatasetConfigError(UnknownEnvironmentError):
    """env.rg_config names a field the dataset's config does not have, or values it rejects."""


def check_config(dataset: str, config: dict) -> dict:
    """`config` (env.rg_config) as plain JSON-safe values, checked against the dataset's config class:
    every key a field of it, and the dataset's own validate() accepting the values."""
    import dataclasses
    import json

    from reasoning_gym.factory import DATASETS

    config = json.loads(json.dumps(dict(config or {})))
    if not config:
        return {}
    config_cls = DATASETS[dataset][1]
    fields = [f.name for f in dataclasses.fields(config_cls) if f.name not in ("seed", "size")]
    unknown = [k for k in config if k not in fields]
    if unknown:
        raise DatasetConfigError(f"env.rg_config: {', '.join(map(repr, unknown))} is not a parameter of Reasoning "
                                 f"Gym's {dataset!r}; its parameters: {', '.join(fields)}")
    try:
        config_cls(**config).validate()
    except Exception as e:  # noqa: BLE001 - the dataset's own message (assertions, type errors)
        raise DatasetConfigError(f"env.rg_config={config} is rejected by {dataset!r}: "
                                 f"{str(e).strip() or type(e).__name__}") from None
    return config


def reasoning_gym_source(dataset: str, config: dict | None = None) -> str:
    """Environment source text for one Reasoning Gym dataset (checked to exist), with its dataset
    parameters `config` (checked: `check_config`) fixed at every difficulty."""
    if dataset not in list_datasets():
        raise UnknownDatasetError(_unknown_message(dataset))
    config = check_config(dataset, config or {})
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    fmt = "fenced" if dataset in MULTILINE else "final_line"
    for const, value in (("DATASET", dataset), ("ANSWER_FORMAT", fmt),
                         ("MAX_LEVEL", MAX_LEVEL.get(dataset)), ("CONFIG", config)):
        text, n = re.subn(rf"^{const} = .*$", lambda _: f"{const} = {value!r}", text,
                          count=1, flags=re.MULTILINE)
        if n != 1:
            raise RuntimeError(f"{TEMPLATE_PATH.name}: no '{const} = ...' line to substitute")
    return text


def resolve(name: str, config: dict | None = None) -> tuple[str, str]:
    """(environment name "rg_<dataset>", source) for ``name`` given with or without the prefix."""
    dataset = name[len(PREFIX):] if name.startswith(PREFIX) else name
    return PREFIX + dataset, reasoning_gym_source(dataset, config)


def _unknown_message(dataset: str) -> str:
    if dataset in UNSUPPORTED:
        return f"Reasoning Gym dataset {dataset!r} is not supported: {UNSUPPORTED[dataset]}"
    names = list_datasets()
    close = difflib.get_close_matches(dataset, names, n=5, cutoff=0.5)
    hint = (f"did you mean {', '.join(close)}?" if close
            else f"{len(names)} available, e.g. {', '.join(names[:5])}")
    return (f"unknown Reasoning Gym dataset {dataset!r}; {hint} "
            "(all: envs.adapters.reasoning_gym.list_datasets())")
