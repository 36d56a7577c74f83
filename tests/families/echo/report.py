"""The echo family's report section: how many words were said."""
from __future__ import annotations

from pathlib import Path

from cluster.rundir.figures import of_kinds, total
from cluster.rundir.html import Html, section, tag
from cluster.rundir.metrics import read_rows


def summarize(run_dir) -> dict | None:
    rows = of_kinds(read_rows(run_dir), ("echo",))
    return {"steps": len(rows), "hits": total(rows, "echo/hits")} if rows else None


def format_summary(s: dict) -> str:
    return f"echo: {s['steps']} steps, {s['hits']} words said"


def step_parts(row: dict, parts: list[str]) -> None:
    if "echo/hits" in row:
        parts.append(f"said {row['echo/hits']}")


def write_plots(run_dir, out: Path) -> list[Path]:
    return []


def key_figures(s: dict) -> list[Html]:
    return []


def html(s: dict, run_dir: Path, plot_paths: list[Path]) -> Html:
    return section("Echo", tag("p", format_summary(s)), id_="echo")
