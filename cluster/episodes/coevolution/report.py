"""The summary and plots of a co-evolution run: each role's reward, the critic against its baselines, held-out
critic accuracy before and after.

Reads run_dir/metrics.jsonl: every `<role>/reward/mean` (a role of a several-role episode), and from
propose_critic rows `critic/accuracy`, `critic/random_baseline`, `critic/majority_baseline`, `maturity`; and
run_dir/critic_eval_<before|after>.json when the critic was measured on held-out candidate sets.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

EDGE_STEPS = 3  # first / last: the mean of this many steps
CRITIC_KEYS = ("critic/accuracy", "critic/random_baseline", "critic/majority_baseline")
CHALLENGER_KEYS = (("challenger/agreement", "solver agreement p"), ("solver/in_band_fraction", "in the band"),
                   ("challenger/duplicate_fraction", "near-duplicates"), ("pseudo_label/accuracy", "pseudo-label acc."))
COEVOLUTION_KINDS = ("propose_critic", "delta_rubric", "challenger")


def _rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], _num(r[key])) for r in rows if _num(r.get(key)) is not None]


def _edges(series: list[tuple[int, float]]) -> tuple[float | None, float | None]:
    values = [v for _, v in series]
    if not values:
        return None, None
    first, last = values[:EDGE_STEPS], values[-EDGE_STEPS:]
    return sum(first) / len(first), sum(last) / len(last)


def roles(rows: list[dict]) -> list[str]:
    """Roles with a reward series, in order of first appearance."""
    found = [k[:-len("/reward/mean")] for r in rows for k in r if k.endswith("/reward/mean")]
    return list(dict.fromkeys(found))


def summarize(run_dir) -> dict | None:
    """None for a run without co-evolution episodes."""
    run_dir = Path(run_dir)
    rows = [r for r in _rows(run_dir) if r.get("kind") in COEVOLUTION_KINDS]
    if not rows:
        return None
    out = {"steps": len(rows), "roles": {}, "critic": {}, "heldout": {}}
    for role in roles(rows):
        first, last = _edges(_series(rows, f"{role}/reward/mean"))
        out["roles"][role] = {"first": first, "last": last}
    for key in CRITIC_KEYS + ("maturity",):
        first, last = _edges(_series(rows, key))
        out["critic"][key.removeprefix("critic/")] = {"first": first, "last": last}
    out["challenger"] = {}
    for key, label in CHALLENGER_KEYS:
        first, last = _edges(_series(rows, key))
        if first is not None:
            out["challenger"][label] = {"first": first, "last": last}
    out["judge"] = {}
    for tag in ("before", "after"):
        path = run_dir / f"critic_eval_{tag}.json"
        if path.is_file():
            out["heldout"][tag] = json.loads(path.read_text())
        path = run_dir / f"judge_eval_{tag}.json"
        if path.is_file():
            out["judge"][tag] = json.loads(path.read_text())
    return out


JUDGE_METHODS = {"delta_rubric": "planner + verifier", "direct": "direct judge", "scalar_rm": "scalar RM"}


def judge_rows(s: dict) -> list[dict]:
    """Held-out pairwise accuracy per judging method, before and after (the scalar RM is trained once)."""
    b, a = s.get("judge", {}).get("before") or {}, s.get("judge", {}).get("after") or {}
    rows = []
    for name in dict.fromkeys([*b.get("methods", {}), *a.get("methods", {})]):
        mb, ma = b.get("methods", {}).get(name), a.get("methods", {}).get(name)
        rows.append({"method": JUDGE_METHODS.get(name, name), "before": mb, "after": ma,
                     "change": (ma or {}).get("change")})
    return rows


def _f(v, sign: bool = False) -> str:
    return "-" if v is None else f"{v:+.3f}" if sign else f"{v:.3f}"


def format_summary(s: dict) -> str:
    lines = [f"co-evolution: {s['steps']} steps; mean of the first / last {EDGE_STEPS} steps",
             f"  {'reward':<22} {'first':>7} {'last':>7}"]
    for role, v in s["roles"].items():
        lines.append(f"  {role:<22} {_f(v['first']):>7} {_f(v['last']):>7}")
    c = s["critic"]
    if c.get("accuracy", {}).get("first") is not None:
        lines += ["", f"  critic on mixed groups {'first':>7} {'last':>7}"]
        for key, label in (("accuracy", "critic accuracy"), ("random_baseline", "random pick"),
                           ("majority_baseline", "majority vote"), ("maturity", "maturity")):
            lines.append(f"  {label:<22} {_f(c[key]['first']):>7} {_f(c[key]['last']):>7}")
    if s.get("challenger"):
        lines += ["", f"  challenger questions   {'first':>7} {'last':>7}"]
        for label, v in s["challenger"].items():
            lines.append(f"  {label:<22} {_f(v['first']):>7} {_f(v['last']):>7}")
    rows = judge_rows(s)
    if rows:
        pairs = (s["judge"].get("after") or s["judge"].get("before"))["pairs"]
        lines += ["", f"  judges on {pairs} held-out pairs, both orders: accuracy [95% interval], order consistency"]
        for r in rows:
            cells = []
            for tag in ("before", "after"):
                e = r[tag]
                cells.append("-" if not e else f"{e['accuracy']:.3f} [{e['accuracy_ci'][0]:.3f}, "
                                                f"{e['accuracy_ci'][1]:.3f}] cons {e['order_consistency']:.2f}")
            line = f"  {r['method']:<19} {cells[0]} -> {cells[1]}"
            if r["change"]:
                c = r["change"]
                line += (f"   change {c['delta']:+.3f} [{c['delta_ci'][0]:+.3f}, {c['delta_ci'][1]:+.3f}]"
                         + (" larger than its interval" if c["significant"] else ""))
            lines.append(line)
    b, a = s["heldout"].get("before"), s["heldout"].get("after")
    if b or a:
        ref = a or b
        lines += ["", f"  critic on {ref['sets']} held-out candidate sets (k={ref['k']}, greedy pick) "
                      f"[95% interval]"]
        for tag, e in (("before", b), ("after", a)):
            if e:
                lo, hi = e["accuracy_ci"]
                lines.append(f"  {tag:<7} accuracy {e['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]   random "
                             f"{e['random_baseline']:.3f}   majority {e['majority_baseline']:.3f}   no pick "
                             f"{e['no_pick']:.3f}")
        change = (a or {}).get("change")
        if change:
            lines.append(_change_line(change))
        sb, sa = (b or {}).get("sampled"), (a or {}).get("sampled")
        if sb or sa:
            e = sa or sb
            lines.append(f"  sampled picks ({e['samples']} per set at T={e['temperature']:g}): the probability of a "
                         f"right pick [95% interval]")
            for tag, e in (("before", sb), ("after", sa)):
                if e:
                    lo, hi = e["accuracy_ci"]
                    lines.append(f"  {tag:<7} accuracy {e['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]")
            if (sa or {}).get("change"):
                lines.append(_change_line(sa["change"]))
    return "\n".join(lines)


def change_verdict(change: dict) -> str:
    """What a paired change says, in the words the summary and the report page share."""
    return "larger than its interval" if change["significant"] else "within its interval (could be noise)"


def _change_line(change: dict) -> str:
    lo, hi = change["delta_ci"]
    return f"  change  {change['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}]: {change_verdict(change)}"


def write_plots(run_dir, out: Path) -> list[Path]:
    """roles.png (each role's reward per step), judges.png (held-out pairwise accuracy per judging method),
    challenger.png (agreement, band, duplicates, pseudo-label accuracy) and critic.png (critic accuracy against
    its baselines, maturity)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    run_dir = Path(run_dir)
    rows = [r for r in _rows(run_dir) if r.get("kind") in COEVOLUTION_KINDS]
    written: list[Path] = []
    if not rows:
        return written

    def save(fig, name: str) -> None:
        out.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        written.append(out / name)

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for role in roles(rows):
        series = _series(rows, f"{role}/reward/mean")
        ax.plot(*zip(*series), "o-", label=f"{role} reward")
    ax.set(xlabel="step", ylabel="mean reward", title="Reward per role")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    save(fig, "roles.png")

    judges = judge_rows(summarize(run_dir) or {})
    if judges:  # held-out pairwise accuracy per method, before and after, with 95% intervals
        fig = Figure(figsize=(max(5.0, 2.0 * len(judges)), 4))
        ax = fig.add_subplot()
        for x, r in enumerate(judges):
            for j, (tag, color) in enumerate((("before", "tab:gray"), ("after", "tab:blue"))):
                e = r[tag]
                if e:
                    lo, hi = e["accuracy_ci"]
                    ax.bar(x + 0.4 * j, e["accuracy"], width=0.4, color=color, capsize=4,
                           yerr=[[e["accuracy"] - lo], [hi - e["accuracy"]]], label=tag if x == 0 else None)
        ax.set_xticks([x + 0.2 for x in range(len(judges))], [r["method"] for r in judges])
        ax.axhline(0.5, color="black", linestyle=":", linewidth=1)
        ax.set(ylabel="pairwise accuracy", title="Judges on held-out pairs (both orders, 95% intervals)")
        ax.set_ylim(0, 1.05)
        ax.legend()
        save(fig, "judges.png")

    def lines(curves, ylabel: str, title: str, name: str) -> None:
        """One line per (metric, label, style) present in the rows, on a 0..1 axis."""
        fig = Figure(figsize=(7, 4))
        ax = fig.add_subplot()
        for key, label, style in curves:
            series = _series(rows, key)
            if series:
                ax.plot(*zip(*series), style, label=label)
        ax.set(xlabel="step", ylabel=ylabel, title=title)
        ax.set_ylim(0, 1.05)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        save(fig, name)

    if _series(rows, "challenger/agreement"):  # R-Zero: how far the solver agrees with itself, and whether rightly
        lines((("challenger/agreement", "solver agreement p", "o-"),
               ("solver/in_band_fraction", "questions in the band", "--"),
               ("challenger/duplicate_fraction", "near-duplicate questions", ":"),
               ("pseudo_label/accuracy", "pseudo-label accuracy (checker)", "s-")),
              "fraction", "Challenger and solver", "challenger.png")
    if _series(rows, "critic/accuracy"):
        lines((("critic/accuracy", "critic", "o-"), ("critic/random_baseline", "random pick", ":"),
               ("critic/majority_baseline", "majority vote", "--"), ("maturity", "maturity", "-")),
              "accuracy on mixed groups", "Critic against its baselines", "critic.png")
    return written
