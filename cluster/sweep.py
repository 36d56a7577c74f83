"""Sweep summaries: one row of final metrics per point, as `summary.csv` and a printed table.

`evoforge train -m ...` calls `SweepSummary` (registered in conf/config.yaml `hydra.callbacks`): each
point records its overrides in its run directory (`overrides.yaml`), and when the sweep ends the
summary of the sweep directory is written and printed. `python -m cluster.sweep DIR` does the same
for any folder of run directories, e.g. the points of a sweep sent as one `ray job submit` per point;
there a point is named by the config keys whose values differ between the points.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from hydra.types import RunMode

OVERRIDES = "overrides.yaml"
SUMMARY = "summary.csv"
COLUMNS = ["point", "reward/mean last", "reward/mean best", "loss", "steps", "run_dir"]
NOT_A_POINT = {"run_dir", "resume"}  # differ between points without defining them


def _rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


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


def summarize(sweep_dir: Path) -> list[dict]:
    """One row per point: the settings that tell it from the others, and its final metrics."""
    dirs = point_dirs(sweep_dir)
    settings = [_settings(d) for d in dirs]
    keys = list(dict.fromkeys(k for s in settings for k in s))
    varying = [k for k in keys if len({s.get(k) for s in settings}) > 1] or keys
    out = []
    for run_dir, s in zip(dirs, settings):
        rows = _rows(run_dir)
        rewards = [r["reward/mean"] for r in rows if "reward/mean" in r]
        out.append({
            "point": " ".join(s[k] for k in varying if k in s),
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


def write_summary(sweep_dir: Path) -> tuple[Path, str]:
    rows = summarize(sweep_dir)
    path = Path(sweep_dir) / SUMMARY
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: "" if r[c] is None else r[c] for c in COLUMNS} for r in rows)
    return path, table(rows)


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
