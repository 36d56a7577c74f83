"""The `task` family's report section: its steps are in the report's shared parts (steps, rewards, roles,
held-out accuracy), so it adds nothing of its own; sweeps count its online-DPO pairs (dpo/pairs)."""
from __future__ import annotations

from pathlib import Path

from cluster.rundir.html import Html

OWN_PLOTS: tuple[str, ...] = ()  # plots shown in this section rather than under Plots
PAIRS_KEY = "dpo/pairs"  # online DPO: preference pairs a step trained on (sweep tables)


def summarize(run_dir) -> dict | None:
    return None


def format_summary(s: dict) -> str:
    return ""


def step_parts(row: dict, parts: list[str]) -> None:
    """Nothing beyond the step's reward and loss."""


def write_plots(run_dir, out: Path) -> list[Path]:
    return []


def key_figures(s: dict) -> list[Html]:
    return []


def html(s: dict, run_dir: Path, plot_paths: list[Path]) -> Html:
    return Html()
