"""Propose-then-Critic's report section: the critic on mixed groups against a random pick and a majority vote,
its maturity, and its accuracy on held-out candidate sets before and after (greedy and sampled picks).

Reads `critic/accuracy`, `critic/random_baseline`, `critic/majority_baseline`, `maturity` from the rows of kind
propose_critic, and run_dir/critic_eval_<before|after>.json.
"""
from __future__ import annotations

import json
from pathlib import Path

from cluster.rundir.figures import EDGE_STEPS, PlotFolder, change_line, edges, fmt, paired_change, rows_of, series
from cluster.rundir.html import Html, interval, num, section, table, tag

KINDS = ("propose_critic",)
CRITIC_KEYS = ("critic/accuracy", "critic/random_baseline", "critic/majority_baseline", "maturity")
LABELS = (("accuracy", "critic accuracy"), ("random_baseline", "random pick"), ("majority_baseline", "majority vote"),
          ("maturity", "maturity"))


def summarize(run_dir) -> dict | None:
    """None for a run without propose_critic episodes."""
    rows = rows_of(run_dir, KINDS)
    if not rows:
        return None
    critic = {}
    for key in CRITIC_KEYS:
        first, last = edges(series(rows, key))
        critic[key.removeprefix("critic/")] = {"first": first, "last": last}
    heldout = {}
    for tag_ in ("before", "after"):
        path = Path(run_dir) / f"critic_eval_{tag_}.json"
        if path.is_file():
            heldout[tag_] = json.loads(path.read_text())
    return {"steps": len(rows), "critic": critic, "heldout": heldout}


def format_summary(s: dict) -> str:
    lines = [f"propose-then-critic: {s['steps']} steps; mean of the first / last {EDGE_STEPS} steps"]
    c = s["critic"]
    if c.get("accuracy", {}).get("first") is not None:
        lines.append(f"  critic on mixed groups {'first':>7} {'last':>7}")
        for key, label in LABELS:
            lines.append(f"  {label:<22} {fmt(c[key]['first']):>7} {fmt(c[key]['last']):>7}")
    b, a = s["heldout"].get("before"), s["heldout"].get("after")
    if b or a:
        ref = a or b
        lines += ["", f"  critic on {ref['sets']} held-out candidate sets (k={ref['k']}, greedy pick) [95% interval]"]
        for tag_, e in (("before", b), ("after", a)):
            if e:
                lo, hi = e["accuracy_ci"]
                lines.append(f"  {tag_:<7} accuracy {e['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]   random "
                             f"{e['random_baseline']:.3f}   majority {e['majority_baseline']:.3f}   no pick "
                             f"{e['no_pick']:.3f}")
        if (a or {}).get("change"):
            lines.append(change_line(a["change"]))
        sb, sa = (b or {}).get("sampled"), (a or {}).get("sampled")
        if sb or sa:
            e = sa or sb
            lines.append(f"  sampled picks ({e['samples']} per set at T={e['temperature']:g}): the probability of a "
                         f"right pick [95% interval]")
            for tag_, e in (("before", sb), ("after", sa)):
                if e:
                    lo, hi = e["accuracy_ci"]
                    lines.append(f"  {tag_:<7} accuracy {e['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]")
            if (sa or {}).get("change"):
                lines.append(change_line(sa["change"]))
    return "\n".join(lines)


def step_parts(row: dict, parts: list[str]) -> None:
    """'critic 0.50 (random 0.25, majority 0.40)  maturity 0.10  k 4'."""
    if "maturity" not in row:
        return
    if "critic/accuracy" in row:
        critic = (f"critic {row['critic/accuracy']:.2f} (random {row['critic/random_baseline']:.2f}, "
                  f"majority {row['critic/majority_baseline']:.2f})")
    else:
        critic = "critic - (no mixed group)"
    parts.append(f"{critic}  maturity {row['maturity']:.2f}  k {row['proposer/k']}")


def write_plots(run_dir, out: Path) -> list[Path]:
    """critic.png: the critic's accuracy on mixed groups against its baselines, and its maturity."""
    rows = rows_of(run_dir, KINDS)
    plots = PlotFolder(out)
    if series(rows, "critic/accuracy"):
        plots.lines(rows, (("critic/accuracy", "critic", "o-"), ("critic/random_baseline", "random pick", ":"),
                           ("critic/majority_baseline", "majority vote", "--"), ("maturity", "maturity", "-")),
                    "accuracy on mixed groups", "Critic against its baselines", "critic.png")
    return plots.written


def key_figures(s: dict) -> list[Html]:
    return []


def html(s: dict, run_dir: Path, plot_paths: list[Path]) -> Html:
    parts = []
    c = s["critic"]
    if c.get("accuracy", {}).get("first") is not None:
        parts += [tag("p", f"Mean of the first / last {EDGE_STEPS} steps of {s['steps']}."),
                  tag("h3", "Critic on mixed groups (candidates that score differently)"),
                  table(["", "first", "last"], [[label, num(c[key]["first"]), num(c[key]["last"])]
                                                for key, label in LABELS], numeric=[1, 2])]
    evals = [(t, e) for t, e in (("before", s["heldout"].get("before")), ("after", s["heldout"].get("after"))) if e]
    if evals:
        change = (s["heldout"].get("after") or {}).get("change") or {}
        parts += [tag("h3", f"Critic on {evals[0][1]['sets']} held-out candidate sets (greedy pick)"),
                  table(["", "accuracy", "95% CI", "random pick", "majority vote", "no pick"],
                        [[t, num(e["accuracy"]), interval(e["accuracy_ci"]), num(e["random_baseline"]),
                          num(e["majority_baseline"]), num(e["no_pick"])] for t, e in evals], numeric=range(1, 6))]
        if change:
            parts.append(paired_change(change))
        sampled = [(t, e["sampled"]) for t, e in evals if e.get("sampled")]
        if sampled:
            first = sampled[0][1]
            parts += [tag("h3", f"Critic's sampled picks ({first['samples']} per set at T={first['temperature']:g}): "
                                "its probability of a right pick"),
                      table(["", "accuracy", "95% CI"], [[t, num(e["accuracy"]), interval(e["accuracy_ci"])]
                                                         for t, e in sampled], numeric=[1, 2])]
            if sampled[-1][1].get("change"):
                parts.append(paired_change(sampled[-1][1]["change"]))
    return section("Propose-then-Critic", *parts, id_="propose-critic") if parts else Html()
