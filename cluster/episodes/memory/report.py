"""The report section of memory agents: held-out accuracy by document length and task type for each
method (truncated one-turn reading, MemAgent-style, the agent with tools before and after training), and the
training curves (accuracy, how episodes stopped, tool use). Accuracy: the gold answer's words in a reply of
at most 16 words (envs/longdoc.answer_hit); exact match and F1 are in the eval files too.

Reads run_dir/metrics.jsonl (rows of the memory kinds) and run_dir/memory_eval_<before|after>.json.
"""
from __future__ import annotations

import json
from pathlib import Path

from cluster.rundir.figures import EDGE_STEPS, PlotFolder, change_verdict, edges, of_kinds, paired_change, series
from cluster.evaluation.stats import paired_delta, wilson
from cluster.rundir.html import Html, interval, num, section, table, tag
from cluster.rundir.metrics import read_rows

MEMORY_KINDS = ("memory_agent", "memory_expert", "memagent")
METHOD_NAMES = {"truncated": "truncated reading", "memagent": "MemAgent-style", "tools": "tools (StateLM)"}
STOPS = ("finish", "max_turns", "context_limit", "malformed", "tool_timeout")


def _eval(run_dir: Path, tag: str) -> dict | None:
    path = run_dir / f"memory_eval_{tag}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _cell(rows: list[dict]) -> dict | None:
    if not rows:
        return None
    hits = sum(r["hit"] for r in rows)
    return {"n": len(rows), "accuracy": hits / len(rows), "accuracy_ci": list(wilson(hits, len(rows))),
            "exact": sum(r["exact"] for r in rows) / len(rows), "f1": sum(r["f1"] for r in rows) / len(rows)}


def heldout_table(run_dir) -> list[dict]:
    """One entry per (method, tag) measured: overall, by length and by kind."""
    run_dir = Path(run_dir)
    out = []
    for when in ("before", "after"):
        ev = _eval(run_dir, when)
        if not ev:
            continue
        for method in dict.fromkeys(r["method"] for r in ev["rows"]):
            rows = [r for r in ev["rows"] if r["method"] == method]
            entry = {"method": method, "tag": when, "all": _cell(rows),
                     "by_length": {str(n): _cell([r for r in rows if r["length"] == n])
                                   for n in sorted({r["length"] for r in rows})},
                     "by_kind": {k: _cell([r for r in rows if r["kind"] == k]) for k in dict.fromkeys(r["kind"]
                                                                                                      for r in rows)},
                     "stops": {s: sum(r.get("stop") == s for r in rows) / len(rows) for s in STOPS
                               if any(r.get("stop") == s for r in rows)}}
            out.append(entry)
    return out


def tools_change(run_dir) -> dict | None:
    """The agent with tools, after minus before on the same held-out tasks (paired)."""
    run_dir = Path(run_dir)
    before, after = _eval(run_dir, "before"), _eval(run_dir, "after")
    if not before or not after:
        return None
    b = {r["task"]: r["hit"] for r in before["rows"] if r["method"] == "tools"}
    a = {r["task"]: r["hit"] for r in after["rows"] if r["method"] == "tools"}
    common = [t for t in b if t in a]
    return paired_delta([b[t] for t in common], [a[t] for t in common]) if common else None


def summarize(run_dir) -> dict | None:
    """None for a run without memory episodes."""
    rows = read_rows(run_dir)
    run_dir = Path(run_dir)
    rows = of_kinds(rows, MEMORY_KINDS)
    if not rows:
        return None
    kinds = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        own = [r for r in rows if r["kind"] == kind]
        first, last = edges(series(own, "agent/accuracy"))
        kinds[kind] = {"steps": len(own), "accuracy_first": first, "accuracy_last": last,
                       "stops": {s: edges(series(own, f"stop/{s}"))[1] for s in STOPS
                                 if series(own, f"stop/{s}")}}
    return {"steps": len(rows), "kinds": kinds, "heldout": heldout_table(run_dir), "change": tools_change(run_dir)}


def _pct(cell: dict | None) -> str:
    return "-" if cell is None else f"{cell['accuracy']:.2f}"


def format_summary(s: dict) -> str:
    lines = [f"memory-agent steps: {s['steps']}"]
    for kind, k in s["kinds"].items():
        first = "-" if k["accuracy_first"] is None else f"{k['accuracy_first']:.3f}"
        last = "-" if k["accuracy_last"] is None else f"{k['accuracy_last']:.3f}"
        stops = ", ".join(f"{n} {v:.2f}" for n, v in k["stops"].items() if v)
        lines.append(f"  {kind:<14} {k['steps']:>3} steps  accuracy {first} -> {last} (first / last "
                     f"{EDGE_STEPS} steps); stops (last {EDGE_STEPS}): {stops or '-'}")
    heldout = s["heldout"]
    if heldout:
        lengths = list(dict.fromkeys(n for e in heldout for n in e["by_length"]))
        kinds = list(dict.fromkeys(k for e in heldout for k in e["by_kind"]))
        n = heldout[0]["all"]["n"]
        head = f"  {'held-out accuracy (' + str(n) + ' tasks)':<36} {'all':>20}" + "".join(
            f"{x + 'w':>8}" for x in lengths) + "".join(f"{k:>9}" for k in kinds)
        lines += ["", head]
        for e in heldout:
            a = e["all"]
            lo, hi = a["accuracy_ci"]
            name = f"{METHOD_NAMES.get(e['method'], e['method'])}, {e['tag']}"
            lines.append(f"  {name:<36} {a['accuracy']:>6.3f} [{lo:.2f}, {hi:.2f}]" +
                         "".join(f"{_pct(e['by_length'].get(x)):>8}" for x in lengths) +
                         "".join(f"{_pct(e['by_kind'].get(k)):>9}" for k in kinds))
        ends = [f"{METHOD_NAMES.get(e['method'], e['method'])}, {e['tag']}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in e["stops"].items()) for e in heldout if e["stops"] and e["method"] == "tools"]
        if ends:
            lines.append("  how the held-out episodes ended: " + "; ".join(ends))
        c = s.get("change")
        if c:
            lo, hi = c["delta_ci"]
            lines.append(f"  tools after - before (paired): {c['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}]: "
                         f"{change_verdict(c)}")
    return "\n".join(lines)


def write_plots(run_dir, out: Path) -> list[Path]:
    """memory_heldout.png (held-out accuracy by document length, one bar group per method) and
    memory_training.png (accuracy and how episodes stopped, per step)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = of_kinds(read_rows(run_dir), MEMORY_KINDS)
    if not rows:
        return []
    plots = PlotFolder(out)
    s = summarize(run_dir)
    heldout = s["heldout"]
    if heldout:
        lengths = list(dict.fromkeys(n for e in heldout for n in e["by_length"]))
        fig = Figure(figsize=(max(6.0, 1.6 * len(lengths) + 2), 4))
        ax = fig.add_subplot()
        width = 0.8 / len(heldout)
        for j, e in enumerate(heldout):
            xs = [i + j * width for i in range(len(lengths))]
            vals = [e["by_length"][n]["accuracy"] if e["by_length"].get(n) else 0.0 for n in lengths]
            ax.bar(xs, vals, width=width, label=f"{METHOD_NAMES.get(e['method'], e['method'])}, {e['tag']}")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(lengths))], [f"{n} words" for n in lengths])
        ax.set(ylabel="accuracy", title="Held-out accuracy by document length")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
        plots.save(fig, "memory_heldout.png")
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for kind in dict.fromkeys(r["kind"] for r in rows):
        points = series([r for r in rows if r["kind"] == kind], "agent/accuracy")
        if points:
            ax.plot(*zip(*points), "o-", label=f"{kind}: accuracy")
    for stop, style in (("finish", "--"), ("malformed", ":"), ("max_turns", "-.")):
        points = series([r for r in rows if r["kind"] == "memory_agent"], f"stop/{stop}")
        if points:
            ax.plot(*zip(*points), style, label=f"memory_agent: stopped by {stop}")
    ax.set(xlabel="step", ylabel="fraction of episodes", title="Memory-agent training")
    ax.set_ylim(0, 1.05)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    plots.save(fig, "memory_training.png")
    return plots.written


def step_parts(row: dict, parts: list[str]) -> None:
    """Nothing beyond the step's reward and loss."""


def key_figures(s: dict) -> list[Html]:
    return []


def html(m: dict, run_dir: Path, plot_paths: list[Path]) -> Html:
    """Memory-agent episodes: held-out accuracy by method, document length and task type; training per kind."""
    parts = [table(["episode kind", "steps", "accuracy, first", "accuracy, last", "stops (last steps)"],
                   [[kind, k["steps"], num(k["accuracy_first"]), num(k["accuracy_last"]),
                     ", ".join(f"{n} {v:.2f}" for n, v in k["stops"].items() if v)] for kind, k in m["kinds"].items()],
                   numeric=[1, 2, 3])]
    rows = m["heldout"]
    if rows:
        lengths = list(dict.fromkeys(n for e in rows for n in e["by_length"]))
        kinds = list(dict.fromkeys(k for e in rows for k in e["by_kind"]))

        def acc(cell):
            return num(cell["accuracy"]) if cell else "-"
        parts += [tag("h3", f"Held-out accuracy on {rows[0]['all']['n']} tasks (the gold answer in a short reply)"),
                  table(["method", "accuracy", "95% CI", "exact", "F1", *[f"{n} words" for n in lengths], *kinds],
                        [[f"{METHOD_NAMES.get(e['method'], e['method'])}, {e['tag']}", num(e["all"]["accuracy"]),
                          interval(e["all"]["accuracy_ci"]), num(e["all"]["exact"]), num(e["all"]["f1"]),
                          *[acc(e["by_length"].get(n)) for n in lengths], *[acc(e["by_kind"].get(k)) for k in kinds]]
                         for e in rows], numeric=range(1, 5 + len(lengths) + len(kinds)))]
    if m.get("change"):
        parts.append(paired_change(m["change"]))
    return section("Memory agents", *parts, id_="memory")
