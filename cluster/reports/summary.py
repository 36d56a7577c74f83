"""The end-of-run summary: what every run has (steps, rewards, each role's rewards, held-out accuracy before and
after), then each episode family's own section (cluster/episodes/<family>/report.py: self-play's funnel and
library, the critic, the judges, memory agents, CSO, ...), as text and plots.

Reads `run_dir/metrics.jsonl` (rundir/metrics.py) and, when present, `run_dir/eval_before.json` and
`run_dir/eval_after.json` (as `evoforge eval ... eval.output=PATH` writes them: a list of {task, accuracy, exact,
instances, ...}). A key absent from every row counts as zero (counts) or is left out (levels, rewards).

    python -m cluster.reports.summary RUN_DIR      prints the summary and writes RUN_DIR/plots/*.png
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from cluster.episodes.registry import report_sections
from cluster.reports import roles
from cluster.rundir.figures import EDGE_STEPS, PlotFolder, edges, fmt, num, series
from cluster.rundir.metrics import read_rows


def read_eval(path: Path) -> list[dict]:
    """The rows of an eval file (eval_before.json, eval_after.json); [] when there is none."""
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    rows = data.get("results", []) if isinstance(data, dict) else data
    return [r for r in rows if isinstance(r, dict) and "task" in r]


def summarize(run_dir) -> dict:
    """The run's summary: steps per episode, the solver's reward, each role's, held-out accuracy, and under
    "sections" each family's own (families the run did not use are left out)."""
    run_dir = Path(run_dir)
    rows = read_rows(run_dir)
    first, last = edges(series(rows, "reward/mean", "solver"))
    before = {r["task"]: r for r in read_eval(run_dir / "eval_before.json")}
    after = {r["task"]: r for r in read_eval(run_dir / "eval_after.json")}
    held_out = [held_out_entry(task, before.get(task, {}), after.get(task, {}))
                for task in [*before, *(t for t in after if t not in before)]]
    found = {name: section.summarize(run_dir) for name, section in report_sections().items()}
    return {
        "steps": len(rows),
        "episodes": dict(Counter(r.get("episode") or r.get("kind") or "solver" for r in rows)),
        "solver_steps": sum(1 for r in rows if r.get("episode", "solver") == "solver"),
        "solver_reward": {"before": first, "after": last},
        "roles": roles.summarize(rows),
        "held_out": held_out,
        "sections": {name: s for name, s in found.items() if s is not None},
    }


def held_out_entry(task: str, b: dict, a: dict) -> dict:
    """One task's before/after comparison. With per-instance scores on the same instances (eval rows of
    evaluation/scoring.py score_row) the change gets a paired 95% interval and `significant`: whether the
    interval excludes zero, i.e. the change is larger than its interval; likewise for pass@k."""
    from cluster.evaluation.stats import paired_delta

    out = {"task": task, "instances": a.get("instances", b.get("instances")),
           "before": b.get("accuracy"), "after": a.get("accuracy"),
           "before_ci": b.get("accuracy_ci"), "after_ci": a.get("accuracy_ci"),
           "exact_before": b.get("exact"), "exact_after": a.get("exact"),
           "k": a.get("k", b.get("k")), "pass_before": b.get("pass_at_k"), "pass_after": a.get("pass_at_k"),
           "pass_before_ci": b.get("pass_at_k_ci"), "pass_after_ci": a.get("pass_at_k_ci")}
    for key, prefix in (("scores", ""), ("pass_scores", "pass_")):
        xs, ys = b.get(key), a.get(key)
        if isinstance(xs, list) and isinstance(ys, list) and xs and len(xs) == len(ys):
            d = paired_delta(xs, ys)
            out.update({f"{prefix}delta": d["delta"], f"{prefix}delta_ci": d["delta_ci"],
                        f"{prefix}significant": d["significant"]})
        elif num(out[f"{prefix}before" if prefix else "before"]) is not None and \
                num(out[f"{prefix}after" if prefix else "after"]) is not None:
            out[f"{prefix}delta"] = out[f"{prefix}after" if prefix else "after"] - \
                out[f"{prefix}before" if prefix else "before"]
    return out


def format_summary(summary: dict) -> str:
    """The summary as text: the steps and rewards, each role's, each family's section, held-out accuracy."""
    episodes = summary["episodes"]
    lines = [f"steps: {summary['steps']}" + (" (" + ", ".join(f"{n} {label}" for label, n in episodes.items()) + ")"
                                             if len(episodes) > 1 else "")]
    if summary["solver_steps"] and summary["solver_reward"]["before"] is not None:
        lines.append(f"solver reward: {fmt(summary['solver_reward']['before'])} -> "
                     f"{fmt(summary['solver_reward']['after'])} (mean of the first / last {EDGE_STEPS} solver steps)")
    blocks = [roles.format_summary(summary["roles"])] if summary["roles"] else []
    found = report_sections()
    blocks += [found[name].format_summary(s) for name, s in summary["sections"].items()]
    for block in filter(None, blocks):
        lines += ["", block]
    return "\n".join(lines + _held_out_lines(summary))


def _held_out_lines(summary: dict) -> list[str]:
    lines = []
    if summary["held_out"]:
        lines += ["", "held-out accuracy: greedy, mean score [95% interval]; pass@k from sampled responses"]
        for r in summary["held_out"]:
            lines.append(f"  {r['task']} ({fmt(r['instances'])} instances)")
            lines.append(f"    greedy  {_with_ci(r['before'], r.get('before_ci'))} -> "
                         f"{_with_ci(r['after'], r.get('after_ci'))}   {_change(r, '')}")
            if r.get("pass_before") is not None or r.get("pass_after") is not None:
                lines.append(f"    pass@{r.get('k')}  {_with_ci(r['pass_before'], r.get('pass_before_ci'))} -> "
                             f"{_with_ci(r['pass_after'], r.get('pass_after_ci'))}   {_change(r, 'pass_')}")
    return lines


def _with_ci(value, ci) -> str:
    if num(value) is None:
        return "-"
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f}"


def _change(r: dict, prefix: str) -> str:
    """'change +0.125 [+0.040, +0.210]: larger than its interval' (or 'within ...': could be noise)."""
    delta = num(r.get(f"{prefix}delta"))
    if delta is None:
        return ""
    ci = r.get(f"{prefix}delta_ci")
    if not ci:
        return f"change {delta:+.3f}"
    verdict = "larger than its interval" if r.get(f"{prefix}significant") else "within its interval (could be noise)"
    return f"change {delta:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]: {verdict}"


def print_summary(run_dir, file=None) -> dict:
    """Print the summary of the run in `run_dir`; return it."""
    summary = summarize(run_dir)
    print(format_summary(summary), file=file or sys.stdout)
    return summary


def write_plots(run_dir, out_dir=None) -> list[Path]:
    """rewards.png (each single-role episode's reward), roles.png, heldout.png and each family's plots, in `out_dir`
    (default run_dir/plots); a plot with no data is not written."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    run_dir = Path(run_dir)
    rows = read_rows(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "plots"
    plots = PlotFolder(out)
    s = summarize(run_dir)

    rewards = {label: series(rows, "reward/mean", label) for label in s["episodes"]}
    rewards = {label: points for label, points in rewards.items() if points}
    if rewards:
        fig = Figure(figsize=(7, 4))
        ax = fig.add_subplot()
        for label, points in rewards.items():
            ax.plot(*zip(*points), "-" if label == "solver" else "o--", label=f"{label} reward")
        ax.set(xlabel="step", ylabel="mean reward", title="Rewards")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        plots.save(fig, "rewards.png")

    held = [r for r in s["held_out"] if num(r["before"]) is not None or num(r["after"]) is not None]
    if held:  # before/after bars with their 95% intervals, greedy and (where measured) pass@k
        kinds = [("", "greedy")] + ([("pass_", "pass@k")] if any(r.get("pass_after") is not None for r in held) else [])
        fig = Figure(figsize=(max(5.0, 2.2 * len(held) * len(kinds)), 4))
        ax = fig.add_subplot()
        labels, x = [], 0
        for r in held:
            for prefix, name in kinds:
                for j, (tag, color) in enumerate((("before", "tab:gray"), ("after", "tab:blue"))):
                    value = num(r.get(f"{prefix}{tag}"))
                    if value is None:
                        continue
                    ci = r.get(f"{prefix}{tag}_ci")
                    err = [[value - ci[0]], [ci[1] - value]] if ci else None
                    ax.bar(x + j * 0.4, value, width=0.4, color=color, yerr=err, capsize=4,
                           label=tag if not labels else None)
                labels.append((x + 0.2, f"{r['task']}\n{name}" if prefix else r["task"]))
                x += 1
        ax.set_xticks([p for p, _ in labels], [t for _, t in labels])
        ax.set(ylabel="accuracy", title="Held-out accuracy before and after (95% intervals)")
        ax.set_ylim(0, 1.05)
        ax.legend()
        plots.save(fig, "heldout.png")
    written = plots.written + roles.write_plots(rows, out)
    found = report_sections()
    for name in s["sections"]:
        written += found[name].write_plots(run_dir, out)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m cluster.reports.summary RUN_DIR   (prints the summary, writes RUN_DIR/plots/*.png)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if not (Path(argv[0]) / "metrics.jsonl").is_file():
        print(f"cluster.reports.summary: error: no metrics.jsonl in {argv[0]}", file=sys.stderr)
        return 1
    print_summary(argv[0])
    for path in write_plots(argv[0]):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
