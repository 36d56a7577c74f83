"""R-Zero challenger's report section: how far the solver agrees with itself on the challenger's questions, how
many questions fall in the band, near-duplicates, and (with a checker) how often the pseudo-label is right."""
from __future__ import annotations

from pathlib import Path

from cluster.rundir.figures import EDGE_STEPS, PlotFolder, edges, fmt, rows_of, series
from cluster.rundir.html import Html, num, section, table, tag

KINDS = ("challenger",)
CURVES = (("challenger/agreement", "solver agreement p", "o-"), ("solver/in_band_fraction", "in the band", "--"),
          ("challenger/duplicate_fraction", "near-duplicates", ":"), ("pseudo_label/accuracy", "pseudo-label acc.", "s-"))


def summarize(run_dir) -> dict | None:
    """None for a run without challenger episodes."""
    rows = rows_of(run_dir, KINDS)
    if not rows:
        return None
    out = {}
    for key, label, _ in CURVES:
        first, last = edges(series(rows, key))
        if first is not None:
            out[label] = {"first": first, "last": last}
    return {"steps": len(rows), "challenger": out}


def format_summary(s: dict) -> str:
    lines = [f"challenger: {s['steps']} steps; mean of the first / last {EDGE_STEPS} steps"]
    if s["challenger"]:
        lines.append(f"  challenger questions   {'first':>7} {'last':>7}")
        for label, v in s["challenger"].items():
            lines.append(f"  {label:<22} {fmt(v['first']):>7} {fmt(v['last']):>7}")
    return "\n".join(lines)


def step_parts(row: dict, parts: list[str]) -> None:
    """Nothing beyond the roles' reward and loss."""


def write_plots(run_dir, out: Path) -> list[Path]:
    """challenger.png: agreement, questions in the band, near-duplicates, pseudo-label accuracy per step."""
    rows = rows_of(run_dir, KINDS)
    plots = PlotFolder(out)
    if series(rows, "challenger/agreement"):
        plots.lines(rows, CURVES, "fraction", "Challenger and solver", "challenger.png")
    return plots.written


def key_figures(s: dict) -> list[Html]:
    return []


def html(s: dict, run_dir: Path, plot_paths: list[Path]) -> Html:
    if not s["challenger"]:
        return Html()
    return section("Challenger", tag("p", f"Mean of the first / last {EDGE_STEPS} steps of {s['steps']}."),
                   table(["", "first", "last"], [[label, num(v["first"]), num(v["last"])]
                                                 for label, v in s["challenger"].items()], numeric=[1, 2]),
                   id_="challenger")
