"""DeltaRubric's report section: held-out pairwise accuracy, in both A/B orders, of the planner + verifier, the
same model judging directly, and a scalar reward model, before and after (run_dir/judge_eval_<before|after>.json);
the verifier's accuracy per step on the console."""
from __future__ import annotations

import json
from pathlib import Path

from cluster.rundir.figures import rows_of
from cluster.rundir.html import Html, interval, num, section, table, tag

KINDS = ("delta_rubric",)
METHODS = {"delta_rubric": "planner + verifier", "direct": "direct judge", "scalar_rm": "scalar RM"}


def summarize(run_dir) -> dict | None:
    """None for a run without delta_rubric episodes."""
    rows = rows_of(run_dir, KINDS)
    if not rows:
        return None
    judge = {}
    for tag_ in ("before", "after"):
        path = Path(run_dir) / f"judge_eval_{tag_}.json"
        if path.is_file():
            judge[tag_] = json.loads(path.read_text())
    return {"steps": len(rows), "judge": judge}


def judge_rows(s: dict) -> list[dict]:
    """Held-out pairwise accuracy per judging method, before and after (the scalar RM is trained once)."""
    b, a = s.get("judge", {}).get("before") or {}, s.get("judge", {}).get("after") or {}
    rows = []
    for name in dict.fromkeys([*b.get("methods", {}), *a.get("methods", {})]):
        mb, ma = b.get("methods", {}).get(name), a.get("methods", {}).get(name)
        rows.append({"method": METHODS.get(name, name), "before": mb, "after": ma, "change": (ma or {}).get("change")})
    return rows


def format_summary(s: dict) -> str:
    lines = [f"deltarubric: {s['steps']} steps"]
    rows = judge_rows(s)
    if rows:
        pairs = (s["judge"].get("after") or s["judge"].get("before"))["pairs"]
        lines.append(f"  judges on {pairs} held-out pairs, both orders: accuracy [95% interval], order consistency")
        for r in rows:
            cells = []
            for tag_ in ("before", "after"):
                e = r[tag_]
                cells.append("-" if not e else f"{e['accuracy']:.3f} [{e['accuracy_ci'][0]:.3f}, "
                                                f"{e['accuracy_ci'][1]:.3f}] cons {e['order_consistency']:.2f}")
            line = f"  {r['method']:<19} {cells[0]} -> {cells[1]}"
            if r["change"]:
                c = r["change"]
                line += (f"   change {c['delta']:+.3f} [{c['delta_ci'][0]:+.3f}, {c['delta_ci'][1]:+.3f}]"
                         + (" larger than its interval" if c["significant"] else ""))
            lines.append(line)
    return "\n".join(lines)


def step_parts(row: dict, parts: list[str]) -> None:
    """'verifier accuracy 0.75  parsed 1.00  prefers A 0.50'."""
    if "verifier/accuracy" in row:
        parts.append(f"verifier accuracy {row['verifier/accuracy']:.2f}  parsed {row['verifier/parsed']:.2f}  "
                     f"prefers A {row['verifier/prefers_a']:.2f}")


def write_plots(run_dir, out: Path) -> list[Path]:
    """judges.png: held-out pairwise accuracy per judging method, before and after, with 95% intervals."""
    from matplotlib.figure import Figure

    s = summarize(run_dir)
    from cluster.rundir.figures import PlotFolder

    plots = PlotFolder(out)
    judges = judge_rows(s or {})
    if judges:
        fig = Figure(figsize=(max(5.0, 2.0 * len(judges)), 4))
        ax = fig.add_subplot()
        for x, r in enumerate(judges):
            for j, (tag_, color) in enumerate((("before", "tab:gray"), ("after", "tab:blue"))):
                e = r[tag_]
                if e:
                    lo, hi = e["accuracy_ci"]
                    ax.bar(x + 0.4 * j, e["accuracy"], width=0.4, color=color, capsize=4,
                           yerr=[[e["accuracy"] - lo], [hi - e["accuracy"]]], label=tag_ if x == 0 else None)
        ax.set_xticks([x + 0.2 for x in range(len(judges))], [r["method"] for r in judges])
        ax.axhline(0.5, color="black", linestyle=":", linewidth=1)
        ax.set(ylabel="pairwise accuracy", title="Judges on held-out pairs (both orders, 95% intervals)")
        ax.set_ylim(0, 1.05)
        ax.legend()
        plots.save(fig, "judges.png")
    return plots.written


def key_figures(s: dict) -> list[Html]:
    return []


def html(s: dict, run_dir: Path, plot_paths: list[Path]) -> Html:
    judges = judge_rows(s)
    if not judges:
        return Html()
    pairs = (s["judge"].get("after") or s["judge"].get("before"))["pairs"]

    def cells(e):
        return [num(e["accuracy"]), interval(e["accuracy_ci"]), num(e["order_consistency"])] if e else ["-"] * 3

    return section("DeltaRubric judges",
                   tag("h3", f"Judges on {pairs} held-out pairs (both A/B orders)"),
                   table(["method", "before", "95% CI", "order consistency", "after", "95% CI", "order consistency",
                          "change", "95% CI"],
                         [[r["method"], *cells(r["before"]), *cells(r["after"]),
                           num((r["change"] or {}).get("delta"), sign=True), interval((r["change"] or {}).get("delta_ci"))]
                          for r in judges], numeric=range(1, 9)), id_="delta-rubric")
