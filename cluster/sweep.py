"""Sweep summaries: one row of final metrics per point, as `summary.csv` and a printed table.

`evoforge train -m ...` calls `SweepSummary` (registered in conf/config.yaml `hydra.callbacks`): each
point records its overrides in its run directory (`overrides.yaml`), and when the sweep ends the
summary of the sweep directory is written and printed. `python -m cluster.sweep DIR` does the same
for any folder of run directories, e.g. the points of a sweep sent as one `ray job submit` per point;
there a point is named by the config keys whose values differ between the points.

When points hold held-out measurements (`eval_before.json`, `eval_after.json`, as `evoforge eval` writes
them), the summary also compares them: one row per (point, task) with accuracy before and after, their
95% intervals, the paired change on the same instances (cluster.reports.summary.held_out_entry) and the point's
training totals (rollouts, tokens, preference pairs), as `heldout.csv`, a second printed table and
`plots/heldout_comparison.png`.
"""
from __future__ import annotations

import csv
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from hydra.types import RunMode

from cluster.rundir.metrics import read_rows

OVERRIDES = "overrides.yaml"
SUMMARY = "summary.csv"
COLUMNS = ["point", "reward/mean last", "reward/mean best", "loss", "steps", "run_dir"]
EVAL_FILES = ("eval_before.json", "eval_after.json")
HELDOUT = "heldout.csv"
HELDOUT_PLOT = "plots/heldout_comparison.png"
HELDOUT_CSV_COLUMNS = ["point", "task", "instances", "before", "before_ci_lo", "before_ci_hi", "after", "after_ci_lo",
                       "after_ci_hi", "delta", "delta_ci_lo", "delta_ci_hi", "significant", "steps", "rollouts",
                       "tokens", "pairs", "run_dir"]
HELDOUT_TABLE_COLUMNS = ["point", "task", "before [95% CI]", "after [95% CI]", "change [95% CI]", "rollouts", "pairs"]
NOT_A_POINT = {"run_dir", "resume"}  # differ between points without defining them


def _overrides(run_dir: Path) -> list[str] | None:
    for path in (run_dir / OVERRIDES, run_dir / ".hydra" / OVERRIDES):
        if path.exists():
            return [str(o) for o in yaml.safe_load(path.read_text()) or []]
    return None


def _flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(tree) if isinstance(tree, list) else str(tree)}


def _settings(run_dir: Path) -> dict[str, str]:
    """What defines a point, key -> `key=value`: its overrides, else its resolved config (flattened)."""
    overrides = _overrides(run_dir)
    if overrides is not None:
        return {o.split("=", 1)[0]: o for o in overrides}
    config = run_dir / "config.yaml"
    flat = _flatten(yaml.safe_load(config.read_text()) or {}) if config.exists() else {}
    return {k: f"{k}={v}" for k, v in flat.items() if k not in NOT_A_POINT}


def point_dirs(sweep_dir: Path) -> list[Path]:
    """Run directories directly under `sweep_dir`, in job order (Hydra names them 0, 1, ...)."""
    dirs = [d for d in Path(sweep_dir).iterdir()
            if d.is_dir() and (_overrides(d) is not None or (d / "config.yaml").exists())]
    return sorted(dirs, key=lambda d: (0, int(d.name), "") if d.name.isdigit() else (1, 0, d.name))


def _labels(dirs: list[Path]) -> list[str]:
    """Each point's name: its settings under the keys whose values differ between the points."""
    settings = [_settings(d) for d in dirs]
    keys = list(dict.fromkeys(k for s in settings for k in s))
    varying = [k for k in keys if len({s.get(k) for s in settings}) > 1] or keys
    return [" ".join(s[k] for k in varying if k in s) for s in settings]


def summarize(sweep_dir: Path) -> list[dict]:
    """One row per point: the settings that tell it from the others, and its final metrics."""
    dirs = point_dirs(sweep_dir)
    out = []
    for run_dir, label in zip(dirs, _labels(dirs)):
        rows = read_rows(run_dir)
        rewards = [r["reward/mean"] for r in rows if "reward/mean" in r]
        out.append({
            "point": label,
            "reward/mean last": rewards[-1] if rewards else None,
            "reward/mean best": max(rewards) if rewards else None,
            "loss": rows[-1].get("loss") if rows else None,
            "steps": rows[-1]["step"] + 1 if rows else 0,
            "run_dir": str(run_dir),
        })
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table(rows: list[dict]) -> str:
    """A Markdown table: readable in a terminal, pastes into an issue."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def _sum(rows: list[dict], key: str) -> int | float | None:
    """The sum of `key` over the rows that hold a number under it; None when none does."""
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    return sum(values) if values else None


def heldout_rows(sweep_dir: Path) -> list[dict]:
    """One row per (point, task) of the points with eval files: held-out accuracy before and after training
    with 95% intervals, the paired change (delta, delta_ci, significant; an unpaired delta without interval
    when the files lack per-instance scores), and the point's training totals from its metrics."""
    from cluster.episodes.registry import report_sections
    from cluster.reports.summary import held_out_entry, read_eval

    # preference pairs a step trained on: the first key (a family's PAIRS_KEY) the metrics have
    pair_keys = [s.PAIRS_KEY for s in report_sections().values() if getattr(s, "PAIRS_KEY", None)]
    dirs = point_dirs(sweep_dir)
    out = []
    for run_dir, label in zip(dirs, _labels(dirs)):
        # a point without eval files has no tasks, hence no rows
        before = {r["task"]: r for r in read_eval(run_dir / EVAL_FILES[0])}
        after = {r["task"]: r for r in read_eval(run_dir / EVAL_FILES[1])}
        rows = read_rows(run_dir)
        pairs = next((_sum(rows, k) for k in pair_keys if any(k in r for r in rows)), None)
        totals = {"steps": rows[-1]["step"] + 1 if rows else 0,  # as the summary counts them
                  "rollouts": _sum(rows, "rollouts/total"), "tokens": _sum(rows, "rollout/tokens"), "pairs": pairs}
        for task in [*before, *(t for t in after if t not in before)]:
            e = held_out_entry(task, before.get(task, {}), after.get(task, {}))
            out.append({"point": label, "task": task, "instances": e["instances"],
                        "before": e["before"], "before_ci": e["before_ci"],
                        "after": e["after"], "after_ci": e["after_ci"],
                        "delta": e.get("delta"), "delta_ci": e.get("delta_ci"), "significant": e.get("significant"),
                        **totals, "run_dir": str(run_dir)})
    return out


def _with_ci(value: float | None, ci: list[float] | None, signed: bool = False) -> str:
    """`0.422 [0.30, 0.55]`; signed (a change): `+0.083 [-0.080, +0.247]`; `-` when there is no value."""
    if value is None:
        return "-"
    if signed:
        return f"{value:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")
    return f"{value:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def heldout_table(rows: list[dict]) -> str:
    """The held-out comparison as a Markdown table, one line per (point, task)."""
    lines = ["| " + " | ".join(HELDOUT_TABLE_COLUMNS) + " |", "|" + "---|" * len(HELDOUT_TABLE_COLUMNS)]
    lines += ["| " + " | ".join([_cell(r["point"]), _cell(r["task"]), _with_ci(r["before"], r["before_ci"]),
                                 _with_ci(r["after"], r["after_ci"]), _with_ci(r["delta"], r["delta_ci"], True),
                                 _cell(r["rollouts"]), _cell(r["pairs"])]) + " |" for r in rows]
    return "\n".join(lines)


def _csv_row(r: dict) -> dict:
    flat = {k: v for k, v in r.items() if not k.endswith("_ci")}
    for key in ("before", "after", "delta"):
        ci = r[f"{key}_ci"] or [None, None]
        flat[f"{key}_ci_lo"], flat[f"{key}_ci_hi"] = ci
    return {c: "" if flat.get(c) is None else flat[c] for c in HELDOUT_CSV_COLUMNS}


def plot_heldout(rows: list[dict], path: Path) -> Path:
    """Before/after accuracy bars with their 95% intervals, one group per point and one panel per task, the
    paired change written above each group (bold when its interval excludes zero)."""
    from matplotlib.figure import Figure

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    points = list(dict.fromkeys(r["point"] for r in rows))
    fig = Figure(figsize=(max(6.0, 1.9 * len(points) + 2), 3.8 * len(tasks) + 0.6))
    axes = fig.subplots(len(tasks), 1, squeeze=False)[:, 0]
    for ax, task in zip(axes, tasks):
        by_point = {r["point"]: r for r in rows if r["task"] == task}
        labelled: set[str] = set()
        for i, point in enumerate(points):
            r = by_point.get(point)
            if r is None:
                ax.text(i, 0.02, "not measured", ha="center", va="bottom", fontsize=8, color="tab:gray")
                continue
            tops = []
            for j, (tag, color) in enumerate((("before", "tab:gray"), ("after", "tab:blue"))):
                value, ci = r[tag], r[f"{tag}_ci"]
                if value is None:
                    continue
                err = [[value - ci[0]], [ci[1] - value]] if ci else None
                ax.bar(i - 0.2 + 0.4 * j, value, width=0.4, color=color, yerr=err, capsize=4,
                       label=None if tag in labelled else f"{tag} training")
                labelled.add(tag)
                tops.append(ci[1] if ci else value)
            if r["delta"] is not None:
                text = _with_ci(r["delta"], r["delta_ci"], signed=True).replace(" [", "\n[")
                text += "" if r["delta_ci"] else "\n(unpaired)"
                ax.text(i, max(tops, default=0.0) + 0.03, f"change {text}", ha="center", va="bottom", fontsize=8,
                        fontweight="bold" if r["significant"] else "normal")
        instances = {r["instances"] for r in by_point.values()} - {None}
        n = f", {instances.pop()} instances" if len(instances) == 1 else ""
        ax.set_title(f"{task}{n}", fontsize=10)
        ax.set_xticks(range(len(points)), [textwrap.fill(p, 22) for p in points], fontsize=8)
        ax.set_ylabel("held-out accuracy")
        ax.set_ylim(0, 1.3)  # room above 1 for the change
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_xlim(-0.6, len(points) - 0.4)
    axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, not over them
    fig.suptitle("Held-out accuracy before and after training, per sweep point\n"
                 "(bars: 95% intervals; change: paired after - before, bold when its interval excludes 0)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def write_heldout(sweep_dir: Path) -> tuple[Path, Path, str] | None:
    """`heldout.csv` and `plots/heldout_comparison.png` in the sweep directory and the printed table;
    None (and nothing written) when no point has eval files."""
    rows = heldout_rows(sweep_dir)
    if not rows:
        return None
    path = Path(sweep_dir) / HELDOUT
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HELDOUT_CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(_csv_row(r) for r in rows)
    return path, plot_heldout(rows, Path(sweep_dir) / HELDOUT_PLOT), heldout_table(rows)


def write_summary(sweep_dir: Path) -> tuple[Path, str]:
    """`summary.csv` and its table; with held-out measurements also `heldout.csv`, the comparison plot and
    the held-out table after the summary table (the returned text holds both)."""
    rows = summarize(sweep_dir)
    path = Path(sweep_dir) / SUMMARY
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: "" if r[c] is None else r[c] for c in COLUMNS} for r in rows)
    text = table(rows)
    held = write_heldout(sweep_dir)
    if held is not None:
        csv_path, plot_path, held_text = held
        text += f"\n\nheld-out accuracy ({csv_path}; plot: {plot_path}):\n{held_text}"
    return path, text


class SweepSummary(Callback):
    """Hydra callback: each point keeps its overrides; the sweep ends with its summary."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        # runs where the point ran (with a remote launcher too), so the record sits beside its metrics
        if config.hydra.mode == RunMode.MULTIRUN:
            out = Path(config.hydra.runtime.output_dir)
            if out.is_dir():
                (out / OVERRIDES).write_text(yaml.safe_dump(list(job_return.overrides), sort_keys=False))

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if sweep_dir.is_dir():
            path, text = write_summary(sweep_dir)
            print(f"\nsweep summary ({path}):\n{text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m cluster.sweep SWEEP_DIR   (a folder of run directories)", file=sys.stderr)
        return 2
    sweep_dir = Path(argv[0])
    if not sweep_dir.is_dir() or not point_dirs(sweep_dir):
        print(f"evoforge: no run directories in {sweep_dir}", file=sys.stderr)
        return 1
    path, text = write_summary(sweep_dir)
    print(f"sweep summary ({path}):\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
