"""`evoforge report RUN`: one self-contained HTML page for a finished run (run_dir/report.html).

The page holds everything `cluster.reports.summary.summarize` knows about the run: key figures, its plots
(written by `write_plots`, embedded as base64 PNG data URIs), each role's rewards, its held-out table with
intervals and pass@k, then each episode family's own section (cluster/episodes/<family>/report.py), in the
registry's order. The HTML kit (rundir/html.py) needs no network and escapes every piece of text: model-written
sources must never inject markup. A part the run lacks (no eval files, no plots, a family it did not use) is left
out.

    evoforge report RUN [--out PATH]        same as `python -m cluster.reports.html RUN [--out PATH]`
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import yaml

from cluster.episodes.registry import report_sections
from cluster.reports import roles
from cluster.rundir.figures import EDGE_STEPS
from cluster.reports.summary import summarize, write_plots
from cluster.rundir.html import CSP, CSS, Html, figure, images, interval, join, num, section, table, tag, yes_no
from cluster.rundir.metrics import METRICS_FILE

REPORT_FILE = "report.html"


# -- reading the run ----------------------------------------------------------------------------------
def read_config(run_dir: Path) -> dict:
    """run_dir/config.yaml as a dict (empty when absent or unreadable)."""
    try:
        data = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


# -- the sections -------------------------------------------------------------------------------------
def header(run_dir: Path, config: dict, s: dict) -> Html:
    def get(group: str, key: str) -> Any:
        return config[group].get(key) if isinstance(config.get(group), dict) else None

    metrics = run_dir / METRICS_FILE
    finished = dt.datetime.fromtimestamp(metrics.stat().st_mtime) if metrics.is_file() else None
    facts = [("model", get("model", "name")), ("env", get("env", "name")),
             ("episodes", ", ".join(s["episodes"]) or None), ("configured steps", config.get("steps")),
             ("last metrics", finished.strftime("%Y-%m-%d %H:%M") if finished else None)]
    line = " · ".join(f"{k}: {v}" for k, v in facts if v is not None)
    return tag("header", join([tag("h1", run_dir.resolve().name), tag("p", line, class_="meta"),
                               tag("p", f"run directory: {run_dir.resolve()}", class_="meta")]))


def _change(r: dict) -> float | None:
    if r.get("delta") is not None:
        return r["delta"]
    b, a = r.get("before"), r.get("after")
    return a - b if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None


def _change_note(r: dict) -> str:
    """The held-out change, its interval and whether the change is larger than it (the interval excludes 0)."""
    change = _change(r)
    if change is None:
        return "change -"
    ci = f" {interval(r['delta_ci'])}" if r.get("delta_ci") is not None else ""
    verdict = {True: ": larger than its interval", False: ": within its interval (not significant)",
               None: " (no interval)"}[None if r.get("significant") is None else bool(r["significant"])]
    return f"change {num(change, sign=True)}{ci}{verdict}"


def key_figures(s: dict, found: dict) -> Html:
    episodes = ", ".join(f"{n} {label}" for label, n in s["episodes"].items())
    figures = [figure("steps", str(s["steps"]), episodes)]
    if s["solver_steps"] and s["solver_reward"]["before"] is not None:
        figures.append(figure("solver reward",
                              f"{num(s['solver_reward']['before'])} → {num(s['solver_reward']['after'])}",
                              f"mean of the first / last {EDGE_STEPS} solver steps"))
    for name, section_summary in s["sections"].items():
        figures += found[name].key_figures(section_summary)
    for r in s["held_out"]:
        figures.append(figure(f"held-out {r['task']}", f"{num(r.get('before'))} → {num(r.get('after'))}",
                              _change_note(r)))
    return section("Key figures", tag("div", join(figures), class_="figures"), id_="figures")


def plots(paths: list[Path], own: set[str]) -> Html:
    """Every plot but those a family shows in its own section."""
    found = images(p for p in paths if p.name not in own)
    return section("Plots", found, id_="plots") if found else Html()


def held_out(rows: list[dict]) -> Html:
    if not rows:
        return Html()
    acc = table(["task", "instances", "before", "95% CI", "after", "95% CI", "change", "95% CI", "significant",
                 "exact before", "exact after"],
                [[r["task"], num(r.get("instances")), num(r.get("before")), interval(r.get("before_ci")),
                  num(r.get("after")), interval(r.get("after_ci")), num(_change(r), sign=True),
                  interval(r.get("delta_ci")), yes_no(r.get("significant")), num(r.get("exact_before")),
                  num(r.get("exact_after"))] for r in rows], numeric=[1, 2, 3, 4, 5, 6, 7, 9, 10])
    parts = [tag("p", "Accuracy on held-out instances before and after training; the change is paired (after − "
                      "before on the same instances) and significant when its 95% interval excludes 0."), acc]
    pass_keys = ("k", "pass_before", "pass_after", "pass_delta")
    if any(r.get(k) is not None for r in rows for k in pass_keys):
        parts += [tag("h3", "pass@k (temperature sampling)"),
                  table(["task", "k", "before", "95% CI", "after", "95% CI", "change", "95% CI", "significant"],
                        [[r["task"], num(r.get("k")), num(r.get("pass_before")), interval(r.get("pass_before_ci")),
                          num(r.get("pass_after")), interval(r.get("pass_after_ci")),
                          num(r.get("pass_delta"), sign=True), interval(r.get("pass_delta_ci")),
                          yes_no(r.get("pass_significant"))] for r in rows], numeric=range(1, 8))]
    return section("Held-out evaluation", *parts, id_="held-out")


# -- the page -----------------------------------------------------------------------------------------
def render(run_dir: Path, plot_paths: list[Path]) -> str:
    """The report page of the run in `run_dir` as a string."""
    s = summarize(run_dir)
    found = report_sections()
    own = {name for section_ in found.values() for name in getattr(section_, "OWN_PLOTS", ())}
    body = join([header(run_dir, read_config(run_dir), s), key_figures(s, found), plots(plot_paths, own),
                 roles.html(s["roles"]), held_out(s["held_out"]),
                 *(found[name].html(section_summary, run_dir, plot_paths)
                   for name, section_summary in s["sections"].items()),
                 tag("footer", f"written by evoforge report on {dt.datetime.now():%Y-%m-%d %H:%M}")])
    head = join([tag("meta", charset="utf-8"), tag("meta", http_equiv="Content-Security-Policy", content=CSP),
                 tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
                 tag("title", f"EvoForge report: {run_dir.resolve().name}"), tag("style", Html(CSS))])
    return f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>{head}</head>\n<body>\n{body}\n</body>\n</html>\n"


def write_report(run_dir, out=None) -> Path:
    """Write the run's plots, then its report page to `out` (default run_dir/report.html); returns the path."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    page = render(run_dir, write_plots(run_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evoforge report",
                                     description="write one self-contained HTML page for a finished run")
    parser.add_argument("run", metavar="RUN", help="the run directory (holds metrics.jsonl)")
    parser.add_argument("--out", metavar="PATH", help=f"where to write the page (default RUN/{REPORT_FILE})")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    run = Path(args.run)
    problem = (f"no run directory {args.run}" if not run.is_dir() else
               f"no metrics.jsonl in {args.run}" if not (run / METRICS_FILE).is_file() else None)
    if problem:
        print(f"evoforge report: error: {problem}", file=sys.stderr)
        return 1
    print(f"wrote {write_report(run, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
