"""The rewards of each role of the run's several-role episodes (a proposer and a critic, a planner and a
verifier, a teacher and a student, ...): the rows that carry `<role>/reward/mean`. Part of every report."""
from __future__ import annotations

from pathlib import Path

from cluster.rundir.figures import EDGE_STEPS, PlotFolder, edges, fmt, series
from cluster.rundir.html import Html, num, section, table, tag

SUFFIX = "/reward/mean"


def roles(rows: list[dict]) -> list[str]:
    """Roles with a reward series, in order of first appearance."""
    return list(dict.fromkeys(k[:-len(SUFFIX)] for r in rows for k in r if k.endswith(SUFFIX)))


def summarize(rows: list[dict]) -> dict | None:
    """None for a run without several-role episodes."""
    rows = [r for r in rows if any(k.endswith(SUFFIX) for k in r)]
    if not rows:
        return None
    out = {}
    for role in roles(rows):
        first, last = edges(series(rows, f"{role}{SUFFIX}"))
        out[role] = {"first": first, "last": last}
    return {"steps": len(rows), "roles": out}


def format_summary(s: dict) -> str:
    lines = [f"roles: {s['steps']} steps of several-role episodes; mean of the first / last {EDGE_STEPS} steps",
             f"  {'reward':<22} {'first':>7} {'last':>7}"]
    for role, v in s["roles"].items():
        lines.append(f"  {role:<22} {fmt(v['first']):>7} {fmt(v['last']):>7}")
    return "\n".join(lines)


def write_plots(rows: list[dict], out: Path) -> list[Path]:
    """roles.png: each role's reward per step."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    plots = PlotFolder(out)
    found = roles(rows)
    if found:
        fig = Figure(figsize=(7, 4))
        ax = fig.add_subplot()
        for role in found:
            ax.plot(*zip(*series(rows, f"{role}{SUFFIX}")), "o-", label=f"{role} reward")
        ax.set(xlabel="step", ylabel="mean reward", title="Reward per role")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        plots.save(fig, "roles.png")
    return plots.written


def html(s: dict | None) -> Html:
    if not s:
        return Html()
    return section("Roles", tag("p", f"Mean of the first / last {EDGE_STEPS} steps of {s['steps']}."),
                   table(["reward", "first", "last"],
                         [[role, num(v["first"]), num(v["last"])] for role, v in s["roles"].items()], numeric=[1, 2]),
                   id_="roles")
