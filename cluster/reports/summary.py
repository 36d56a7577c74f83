"""The end-of-run summary of a self-play run: the admission funnel, the library, rewards, held-out accuracy.

Reads `run_dir/metrics.jsonl` (one row per step) and, when present, `run_dir/eval_before.json` and
`run_dir/eval_after.json` (as `evoforge eval ... eval.output=PATH` writes them: a list of
{task, accuracy, exact, instances}). Keys read from a metrics row, each optional:

    episode                          "solver" or "generator" (rows without it count as solver steps)
    reward/mean                      solver reward of a solver step
    selfplay/generator_reward        generator reward of a generator step
    selfplay/proposals               environments proposed in the step
    selfplay/gate/<gate>/passed      proposals of the step that passed <gate>
    selfplay/admitted                proposals of the step admitted to the library
    selfplay/retired                 library environments retired in the step
    selfplay/library_size            library size after the step

Counts (proposals, passes, admitted, retired) are per step and summed over the run; library_size is
a level. A key absent from every row counts as zero (counts) or is left out (levels, rewards).

Why proposals were rejected comes from `run_dir/proposals/`: `rejections.json`, the run's counts of
first-failed-gate reasons that self-play keeps up to date (so they stay whole when old step files are
pruned, `selfplay.keep_proposals`), plus any `step_NNNNNN.jsonl` newer than it (or all of them, for a
run without it).

    python -m cluster.reports.summary RUN_DIR      prints the summary and writes RUN_DIR/plots/*.png
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

from cluster.episodes.coevolution import report as coevolve_report

from cluster.episodes.cso import report as cso_report

from cluster.episodes.memory import report as memory_report
from envs.gates import PROPOSAL_GATES

GATES = PROPOSAL_GATES  # in the order proposals meet them
EDGE_STEPS = 3  # solver reward before/after: mean of the first / last this many solver steps
GATE_PREFIX, GATE_SUFFIX = "selfplay/gate/", "/passed"
PROPOSALS_DIR = "proposals"  # run_dir/proposals/step_NNNNNN.jsonl: every proposal of one generator step
REJECTIONS_FILE = "rejections.json"  # in PROPOSALS_DIR: the run's rejection counts (see new_rejections)
MAX_REASONS = 50  # distinct reasons counted per gate; rarer ones merge into OTHER_REASONS
OTHER_REASONS = "(other reasons)"


def read_rows(run_dir) -> list[dict]:
    """The rows of run_dir/metrics.jsonl (empty when there is none)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _num(value) -> float | None:
    """A finite number, or None for anything else (missing, null, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _series(rows: list[dict], key: str, episode: str | None = None) -> list[tuple[int, float]]:
    """(step, value) of every row holding a number under `key` (and of that episode, if given)."""
    out = []
    for i, row in enumerate(rows):
        if episode is not None and row.get("episode", "solver") != episode:
            continue
        value = _num(row.get(key))
        if value is not None:
            out.append((int(row.get("step", i)), value))
    return out


def _total(rows: list[dict], key: str) -> int:
    return int(sum(v for _, v in _series(rows, key)))


def gate_names(rows: list[dict]) -> list[str]:
    """GATES, then any other gate found in the rows (in order of first appearance)."""
    extra = []
    for row in rows:
        for key in row:
            if key.startswith(GATE_PREFIX) and key.endswith(GATE_SUFFIX):
                name = key[len(GATE_PREFIX):-len(GATE_SUFFIX)]
                if name not in GATES and name not in extra:
                    extra.append(name)
    return [*GATES, *extra]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _read_eval(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    rows = data.get("results", []) if isinstance(data, dict) else data
    return [r for r in rows if isinstance(r, dict) and "task" in r]


def summarize(run_dir) -> dict:
    """The run's summary: steps, the funnel, admissions, library growth, rewards, held-out accuracy."""
    run_dir = Path(run_dir)
    rows = read_rows(run_dir)
    solver = [v for _, v in _series(rows, "reward/mean", "solver")]
    generator = [v for _, v in _series(rows, "selfplay/generator_reward")]
    library = [v for _, v in _series(rows, "selfplay/library_size")]
    before = {r["task"]: r for r in _read_eval(run_dir / "eval_before.json")}
    after = {r["task"]: r for r in _read_eval(run_dir / "eval_after.json")}
    held_out = [held_out_entry(task, before.get(task, {}), after.get(task, {}))
                for task in [*before, *(t for t in after if t not in before)]]
    return {
        "steps": len(rows),
        "solver_steps": sum(1 for r in rows if r.get("episode", "solver") == "solver"),
        "generator_steps": sum(1 for r in rows if r.get("episode") == "generator"),
        "funnel": {"proposals": _total(rows, "selfplay/proposals"),
                   "gates": {g: _total(rows, f"{GATE_PREFIX}{g}{GATE_SUFFIX}") for g in gate_names(rows)}},
        "admitted": _total(rows, "selfplay/admitted"),
        "retired": _total(rows, "selfplay/retired"),
        "library": {"start": int(library[0]) if library else None, "end": int(library[-1]) if library else None},
        "solver_reward": {"before": _mean(solver[:EDGE_STEPS]), "after": _mean(solver[-EDGE_STEPS:])},
        "generator_reward": {"mean": _mean(generator), "last": generator[-1] if generator else None},
        "held_out": held_out,
        "rejections": rejection_reasons(run_dir),
        "calibration": calibration_rows(run_dir),
        "generator_heldout": generator_heldout(run_dir),
        "coevolution": coevolve_report.summarize(run_dir),
        "memory": memory_report.summarize(run_dir),
        "cso": cso_report.summarize(run_dir),
    }


def generator_heldout(run_dir) -> dict:
    """{"before": ..., "after": ...} from generator_eval_<tag>.json (the generator's gate pass rates on fixed
    prompts, cluster/episodes/selfplay/library_loop.py measure_generator); {} when the run has none."""
    out = {}
    for tag in ("before", "after"):
        path = Path(run_dir) / f"generator_eval_{tag}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("gates"), dict):
            out[tag] = {"proposals": data.get("proposals"), "gates": data["gates"], "complete": data.get("complete")}
    return out


def calibration_rows(run_dir) -> list[dict]:
    """Each library environment's calibrated difficulty: env, difficulty, p, in_band, cached (the start-of-run
    search, cluster/episodes/selfplay/calibration.py; an admitted environment's comes from its L5 gate). [] without a library."""
    from envs.library import Library

    folder = Path(run_dir) / "library"
    if not folder.is_dir():
        return []
    try:
        entries = Library.load(folder, autosave=False).all()
    except Exception:  # noqa: BLE001 - a damaged library leaves the table out; the report still renders
        return []
    rows = []
    for e in entries:
        c = e.calibration if isinstance(e.calibration, dict) else {}
        if "difficulty" in c:
            rows.append({"env": e.name, "difficulty": c.get("difficulty"), "p": c.get("p"),
                         "in_band": c.get("in_band", True if c.get("when") is None else None),
                         "cached": c.get("cached")})
    return rows


def held_out_entry(task: str, b: dict, a: dict) -> dict:
    """One task's before/after comparison. With per-instance scores on the same instances (eval rows of
    cluster.evaluate.score_row) the change gets a paired 95% interval and `significant`: whether the
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
        elif _num(out[f"{prefix}before" if prefix else "before"]) is not None and \
                _num(out[f"{prefix}after" if prefix else "after"]) is not None:
            out[f"{prefix}delta"] = out[f"{prefix}after" if prefix else "after"] - \
                out[f"{prefix}before" if prefix else "before"]
    return out


def rejection_reasons(run_dir, top: int = 3) -> dict[str, list[tuple[str, int]]]:
    """Per gate, the most common reasons proposals failed it, over the whole run (read_rejections)."""
    counts = read_rejections(Path(run_dir) / PROPOSALS_DIR)["counts"]
    return {g: sorted(c.items(), key=lambda kv: -kv[1])[:top] for g, c in counts.items()}


# -- the run's rejection counts, kept while proposal files are pruned -------------------------------
def new_rejections() -> dict:
    """Empty counts: {"format", "through_step" (the last step counted, -1: none), "proposals" (counted),
    "counts": {gate: {reason: proposals whose first failed gate and (blurred) reason these are}}}."""
    return {"format": 1, "through_step": -1, "proposals": 0, "counts": {}}


def count_rejections(counts: dict, records, step: int) -> dict:
    """Add one step's proposal records (dicts with "gates") to ``counts``; returns it."""
    for record in records:
        counts["proposals"] += 1
        failed = next((g for g in record.get("gates") or [] if not g.get("passed")), None)
        if failed:
            per_gate = counts["counts"].setdefault(str(failed.get("gate")), {})
            reason = _generic(str(failed.get("reason", "")))
            per_gate[reason] = per_gate.get(reason, 0) + 1
            if len(per_gate) > MAX_REASONS:  # bounded: the rarest reason (not OTHER) merges into OTHER
                rarest = min((r for r in per_gate if r != OTHER_REASONS), key=per_gate.get)
                per_gate[OTHER_REASONS] = per_gate.get(OTHER_REASONS, 0) + per_gate.pop(rarest)
    counts["through_step"] = max(counts["through_step"], int(step))
    return counts


def proposal_files(folder) -> list[Path]:
    """The step files in ``folder``, oldest step first."""
    folder = Path(folder)
    return sorted(folder.glob("step_*.jsonl"), key=file_step) if folder.is_dir() else []


def file_step(path: Path) -> int:
    try:
        return int(Path(path).stem.split("_", 1)[1])
    except (IndexError, ValueError):
        return -1


def read_rejections(folder, before: int | None = None) -> dict:
    """The counts in ``folder`` (a run's proposals/ or a checkpoint's): its REJECTIONS_FILE plus the step
    files newer than that counted; only steps below ``before`` when given (the file is ignored if it
    counted further)."""
    folder = Path(folder)
    counts = new_rejections()
    try:
        saved = json.loads((folder / REJECTIONS_FILE).read_text())
        if isinstance(saved, dict) and isinstance(saved.get("counts"), dict) and \
                (before is None or saved.get("through_step", -1) < before):
            counts.update(saved)
    except (OSError, ValueError):
        pass  # none (an older run, or no generator step yet) or unreadable: count the files
    for path in proposal_files(folder):
        step = file_step(path)
        if step <= counts["through_step"] or (before is not None and step >= before):
            continue
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        count_rejections(counts, [r for r in records if isinstance(r, dict)], step)
    return counts


def write_rejections(folder, counts: dict) -> None:
    """``counts`` to folder/REJECTIONS_FILE, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{REJECTIONS_FILE}.", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(counts, f, indent=1, sort_keys=True)
        os.replace(tmp, folder / REJECTIONS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prune_proposals(folder, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` step files (keep <= 0: keep all); returns the deleted ones."""
    old = proposal_files(folder)[:-keep] if keep > 0 else []
    for path in old:
        path.unlink(missing_ok=True)
    return old


def _generic(reason: str) -> str:
    """A reason with its specifics (line numbers, quoted names, numbers) blurred, so alike reasons group."""
    reason = re.sub(r"line \d+", "line N", reason)
    reason = re.sub(r"'[^']*'", "'...'", reason)
    return re.sub(r"\d+(\.\d+)?", "N", reason)[:100]


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_summary(summary: dict) -> str:
    """The summary as text: one table per part, every gate listed (zeros too)."""
    f, lib = summary["funnel"], summary["library"]
    proposals = f["proposals"]
    co, memory, cso = summary.get("coevolution"), summary.get("memory"), summary.get("cso")
    task_steps = summary["solver_steps"] - (cso["steps"] if cso else 0)  # cso rows are solver steps too
    if (co or memory or cso) and not task_steps and not summary["generator_steps"]:  # no task/evoenv steps
        parts = ([coevolve_report.format_summary(co)] if co else []) + (
            [memory_report.format_summary(memory)] if memory else []) + (
            [cso_report.format_summary(cso)] if cso else [])
        return "\n".join(["\n\n".join(parts)] + _held_out_lines(summary))
    cso_lines = ["", cso_report.format_summary(cso)] if cso else []
    if not summary["generator_steps"] and not proposals and lib["start"] is None:  # no self-play in this run
        lines = [f"steps: {summary['steps']}",
                 f"reward: {_fmt(summary['solver_reward']['before'])} -> {_fmt(summary['solver_reward']['after'])}"
                 f" (mean of the first / last {EDGE_STEPS} steps)"]
        return "\n".join(lines + cso_lines + _held_out_lines(summary))
    lines = [f"steps: {summary['steps']} ({summary['solver_steps']} solver, {summary['generator_steps']} generator)",
             "", "admission funnel (cumulative over the run)", f"  {'proposals':<10} {proposals:>6}"]
    for gate, passed in f["gates"].items():
        share = f"{100 * passed / proposals:5.1f}%" if proposals else "    -"
        lines.append(f"  {gate:<10} {passed:>6}  {share}")
    cal = summary.get("calibration") or []
    if cal:
        lines.insert(1, f"calibration: {len(cal)} library environments, {sum(bool(r['in_band']) for r in cal)} with a "
                        f"pass rate inside the band ({sum(bool(r['cached']) for r in cal)} read from the cache)")
    lines += [f"  {'admitted':<10} {summary['admitted']:>6}", "",
              f"library: {_fmt(lib['start'])} -> {_fmt(lib['end'])} environments "
              f"({summary['admitted']} admitted, {summary['retired']} retired)",
              f"solver reward: {_fmt(summary['solver_reward']['before'])} -> {_fmt(summary['solver_reward']['after'])}"
              f" (mean of the first / last {EDGE_STEPS} solver steps)",
              f"generator reward: mean {_fmt(summary['generator_reward']['mean'])}, "
              f"last {_fmt(summary['generator_reward']['last'])}"]
    if summary.get("rejections"):
        lines += ["", "why proposals were rejected (first failed gate, most common reasons)"]
        for gate in [g for g in f["gates"] if g in summary["rejections"]] + \
                [g for g in summary["rejections"] if g not in f["gates"]]:
            for reason, n in summary["rejections"][gate]:
                lines.append(f"  {gate:<8} {n:>4}  {reason}")
    gen = summary.get("generator_heldout") or {}
    if gen:
        b, a = gen.get("before", {}), gen.get("after", {})
        n = a.get("proposals", b.get("proposals"))
        lines += ["", f"generator on fixed held-out prompts ({n} proposals): passed each gate, before -> after"]
        for gate in GATES:
            lines.append(f"  {gate:<10} {_fmt(b.get('gates', {}).get(gate)):>4} -> {_fmt(a.get('gates', {}).get(gate))}")
    return "\n".join(lines + cso_lines + _held_out_lines(summary))


def _held_out_lines(summary: dict) -> list[str]:
    lines = []
    if summary["held_out"]:
        lines += ["", "held-out accuracy: greedy, mean score [95% interval]; pass@k from sampled responses"]
        for r in summary["held_out"]:
            lines.append(f"  {r['task']} ({_fmt(r['instances'])} instances)")
            lines.append(f"    greedy  {_with_ci(r['before'], r.get('before_ci'))} -> "
                         f"{_with_ci(r['after'], r.get('after_ci'))}   {_change(r, '')}")
            if r.get("pass_before") is not None or r.get("pass_after") is not None:
                lines.append(f"    pass@{r.get('k')}  {_with_ci(r['pass_before'], r.get('pass_before_ci'))} -> "
                             f"{_with_ci(r['pass_after'], r.get('pass_after_ci'))}   {_change(r, 'pass_')}")
    return lines


def _with_ci(value, ci) -> str:
    if _num(value) is None:
        return "-"
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f}"


def _change(r: dict, prefix: str) -> str:
    """'change +0.125 [+0.040, +0.210]: larger than its interval' (or 'within ...': could be noise)."""
    delta = _num(r.get(f"{prefix}delta"))
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
    """rewards.png, heldout.png, library.png and funnel.png in `out_dir` (default run_dir/plots); a plot with no data
    in the metrics is not written. Matplotlib's Agg canvas, no pyplot: no display, no global state."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    run_dir = Path(run_dir)
    rows = read_rows(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "plots"
    written: list[Path] = []

    def save(fig, name: str) -> None:
        out.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        written.append(out / name)

    solver, generator = _series(rows, "reward/mean", "solver"), _series(rows, "selfplay/generator_reward")
    if solver or generator:
        fig = Figure(figsize=(7, 4))
        ax = fig.add_subplot()
        for series, label, style in ((solver, "solver reward", "-"), (generator, "generator reward", "o--")):
            if series:
                ax.plot(*zip(*series), style, label=label)
        ax.set(xlabel="step", ylabel="mean reward", title="Rewards")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        save(fig, "rewards.png")

    library, retired = _series(rows, "selfplay/library_size"), _series(rows, "selfplay/retired")
    if library or retired:
        fig = Figure(figsize=(7, 4))
        ax = fig.add_subplot()
        if library:
            ax.plot(*zip(*library), "-", label="library size")
        if retired:
            steps, counts = zip(*retired)
            ax.step(steps, [sum(counts[:i + 1]) for i in range(len(counts))], where="post", label="retired (total)")
        ax.set(xlabel="step", ylabel="environments", title="Environment library")
        ax.legend()
        save(fig, "library.png")

    held = [r for r in summarize(run_dir)["held_out"] if _num(r["before"]) is not None or _num(r["after"]) is not None]
    if held:  # before/after bars with their 95% intervals, greedy and (where measured) pass@k
        kinds = [("", "greedy")] + ([("pass_", "pass@k")] if any(r.get("pass_after") is not None for r in held) else [])
        fig = Figure(figsize=(max(5.0, 2.2 * len(held) * len(kinds)), 4))
        ax = fig.add_subplot()
        labels, x = [], 0
        for r in held:
            for prefix, name in kinds:
                for j, (tag, color) in enumerate((("before", "tab:gray"), ("after", "tab:blue"))):
                    value = _num(r.get(f"{prefix}{tag}"))
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
        save(fig, "heldout.png")

    if any(k == "selfplay/proposals" or k.startswith(GATE_PREFIX) for row in rows for k in row):
        summary = summarize(run_dir)
        labels = ["proposals", *summary["funnel"]["gates"], "admitted"]
        counts = [summary["funnel"]["proposals"], *summary["funnel"]["gates"].values(), summary["admitted"]]
        fig = Figure(figsize=(8, 4))
        ax = fig.add_subplot()
        bars = ax.bar(labels, counts, color=["tab:gray", *["tab:blue"] * (len(labels) - 2), "tab:green"])
        ax.bar_label(bars, labels=[str(c) for c in counts])
        ax.set(ylabel="proposals (cumulative)", title="Admission funnel")
        ax.set_ylim(0, max(1, max(counts)) * 1.15)
        save(fig, "funnel.png")
    written += coevolve_report.write_plots(run_dir, out)  # roles.png, critic.png for co-evolution episodes
    written += memory_report.write_plots(run_dir, out)  # memory_heldout.png, memory_training.png
    written += cso_report.write_plots(run_dir, out)  # cso_funnel.png
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
