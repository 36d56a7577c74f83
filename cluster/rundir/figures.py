"""What every report section reads and writes with: numbers out of metrics rows, first/last means, the words for a
paired change, and a folder of plots."""
from __future__ import annotations

import math
from pathlib import Path

from cluster.rundir.html import Html, interval, tag
from cluster.rundir.html import num as html_num
from cluster.rundir.metrics import read_rows

EDGE_STEPS = 3  # "first" / "last": the mean of this many steps


def num(value) -> float | None:
    """A finite number, or None for anything else (missing, null, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def of_kinds(rows: list[dict], kinds) -> list[dict]:
    """The rows of these episode kinds."""
    return [r for r in rows if r.get("kind") in kinds]


def rows_of(run_dir, kinds) -> list[dict]:
    """The metrics rows of a run directory that these episode kinds wrote."""
    return of_kinds(read_rows(run_dir), kinds)


def series(rows: list[dict], key: str, episode: str | None = None) -> list[tuple[int, float]]:
    """(step, value) of every row holding a number under `key` (and of that episode label, if given; a row without
    a label counts as a solver row)."""
    out = []
    for i, row in enumerate(rows):
        if episode is not None and row.get("episode", "solver") != episode:
            continue
        value = num(row.get(key))
        if value is not None:
            out.append((int(row.get("step", i)), value))
    return out


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def edges(points: list[tuple[int, float]], n: int = EDGE_STEPS) -> tuple[float | None, float | None]:
    """The mean of the first n and of the last n values."""
    values = [v for _, v in points]
    return (mean(values[:n]), mean(values[-n:])) if values else (None, None)


def total(rows: list[dict], key: str) -> int:
    return int(sum(v for _, v in series(rows, key)))


fmt = html_num  # a number as text ("-" for None): the same words in the text summary and on the page


def change_verdict(change: dict) -> str:
    """What a paired change says, in the words the summary and the report page share."""
    return "larger than its interval" if change["significant"] else "within its interval (could be noise)"


def paired_change(change: dict) -> Html:
    """A paired change with its interval and what it says, as a paragraph of a report page."""
    return tag("p", f"change {html_num(change['delta'], sign=True)} {interval(change['delta_ci'])}: "
                    + change_verdict(change))


def change_line(change: dict) -> str:
    lo, hi = change["delta_ci"]
    return f"  change  {change['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}]: {change_verdict(change)}"


class PlotFolder:
    """Figures saved as PNG into one folder (matplotlib's Agg canvas, no pyplot: no display, no global state)."""

    def __init__(self, out: Path):
        self.out, self.written = Path(out), []

    def save(self, fig, name: str) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(self.out / name, dpi=100)
        self.written.append(self.out / name)

    def lines(self, rows: list[dict], curves, ylabel: str, title: str, name: str) -> None:
        """One line per (metric key, label, style) the rows hold, over the steps, on a 0..1 axis."""
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        fig = Figure(figsize=(7, 4))
        ax = fig.add_subplot()
        for key, label, style in curves:
            points = series(rows, key)
            if points:
                ax.plot(*zip(*points), style, label=label)
        ax.set(xlabel="step", ylabel=ylabel, title=title)
        ax.set_ylim(0, 1.05)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        self.save(fig, name)
