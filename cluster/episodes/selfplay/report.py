"""Self-play's report section: the admission funnel and why proposals were rejected, the library's growth, the
generator's reward and its gates on held-out prompts, the start-of-run calibration, and every environment.

Reads from metrics rows (each optional): `selfplay/proposals`, `selfplay/gate/<gate>/passed`, `selfplay/admitted`,
`selfplay/retired` (per step, summed over the run), `selfplay/library_size` (a level), `selfplay/generator_reward`;
and run_dir/proposals/ (rejections.py), run_dir/library/, run_dir/generator_eval_<before|after>.json.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cluster.episodes.selfplay.rejections import rejection_reasons
from cluster.rundir.figures import PlotFolder, fmt, mean, series, total
from cluster.rundir.html import Html, figure, join, num, section, table, tag, yes_no
from cluster.rundir.metrics import read_rows
from envs.gates import PROPOSAL_GATES

GATES = PROPOSAL_GATES  # in the order proposals meet them
GATE_PREFIX, GATE_SUFFIX = "selfplay/gate/", "/passed"
LIBRARY_DIR = "library"
MAX_DETAILS = 400  # characters of a gate report's details shown in the page


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


def summarize(run_dir) -> dict | None:
    """None for a run without self-play (no generator step, no proposal, no library size)."""
    rows = read_rows(run_dir)
    run_dir = Path(run_dir)
    generator = [v for _, v in series(rows, "selfplay/generator_reward")]
    library = [v for _, v in series(rows, "selfplay/library_size")]
    generator_steps = sum(1 for r in rows if r.get("episode") == "generator")
    proposals = total(rows, "selfplay/proposals")
    if not generator_steps and not proposals and not library:
        return None
    return {
        "generator_steps": generator_steps,
        "funnel": {"proposals": proposals,
                   "gates": {g: total(rows, f"{GATE_PREFIX}{g}{GATE_SUFFIX}") for g in gate_names(rows)}},
        "admitted": total(rows, "selfplay/admitted"),
        "retired": total(rows, "selfplay/retired"),
        "library": {"start": int(library[0]) if library else None, "end": int(library[-1]) if library else None},
        "generator_reward": {"mean": mean(generator), "last": generator[-1] if generator else None},
        "rejections": rejection_reasons(run_dir),
        "calibration": calibration_rows(run_dir),
        "generator_heldout": generator_heldout(run_dir),
    }


def generator_heldout(run_dir) -> dict:
    """{"before": ..., "after": ...} from generator_eval_<tag>.json (the generator's gate pass rates on fixed
    prompts, library_loop.py measure_generator); {} when the run has none."""
    out = {}
    for tag_ in ("before", "after"):
        path = Path(run_dir) / f"generator_eval_{tag_}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("gates"), dict):
            out[tag_] = {"proposals": data.get("proposals"), "gates": data["gates"], "complete": data.get("complete")}
    return out


def calibration_rows(run_dir) -> list[dict]:
    """Each library environment's calibrated difficulty: env, difficulty, p, in_band, cached (the start-of-run
    search, calibration.py; an admitted environment's comes from its L5 gate). [] without a library."""
    from envs.library import Library

    folder = Path(run_dir) / LIBRARY_DIR
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


def read_library(run_dir: Path) -> tuple[list, str | None]:
    """(entries, problem): the run's library entries, or [] and why they could not be read (None: no library)."""
    from envs.library import INDEX, Library, LibraryError

    folder = Path(run_dir) / LIBRARY_DIR
    if not (folder / INDEX).is_file():
        return [], None
    try:
        return Library.load(folder, autosave=False).all(), None
    except LibraryError as e:
        return [], str(e)


# -- text --------------------------------------------------------------------------------------------
def format_summary(s: dict) -> str:
    """The funnel (every gate, zeros too), the library, the generator, the rejection reasons."""
    f, lib = s["funnel"], s["library"]
    proposals = f["proposals"]
    lines = ["admission funnel (cumulative over the run)", f"  {'proposals':<10} {proposals:>6}"]
    for gate, passed in f["gates"].items():
        share = f"{100 * passed / proposals:5.1f}%" if proposals else "    -"
        lines.append(f"  {gate:<10} {passed:>6}  {share}")
    cal = s.get("calibration") or []
    if cal:
        lines.insert(0, f"calibration: {len(cal)} library environments, {sum(bool(r['in_band']) for r in cal)} with "
                        f"a pass rate inside the band ({sum(bool(r['cached']) for r in cal)} read from the cache)")
    lines += [f"  {'admitted':<10} {s['admitted']:>6}", "",
              f"library: {fmt(lib['start'])} -> {fmt(lib['end'])} environments "
              f"({s['admitted']} admitted, {s['retired']} retired)",
              f"generator reward: mean {fmt(s['generator_reward']['mean'])}, "
              f"last {fmt(s['generator_reward']['last'])}"]
    if s.get("rejections"):
        lines += ["", "why proposals were rejected (first failed gate, most common reasons)"]
        for gate in [g for g in f["gates"] if g in s["rejections"]] + \
                [g for g in s["rejections"] if g not in f["gates"]]:
            for reason, n in s["rejections"][gate]:
                lines.append(f"  {gate:<8} {n:>4}  {reason}")
    gen = s.get("generator_heldout") or {}
    if gen:
        b, a = gen.get("before", {}), gen.get("after", {})
        n = a.get("proposals", b.get("proposals"))
        lines += ["", f"generator on fixed held-out prompts ({n} proposals): passed each gate, before -> after"]
        for gate in GATES:
            lines.append(f"  {gate:<10} {fmt(b.get('gates', {}).get(gate)):>4} -> {fmt(a.get('gates', {}).get(gate))}")
    return "\n".join(lines)


def step_parts(row: dict, parts: list[str]) -> None:
    """'library 10/12 active', and on a generator step 'proposals 8 -> gates 6/4/... -> admitted 1'."""
    if "selfplay/library_size" not in row:
        return
    text = f"library {row['selfplay/active']}/{row['selfplay/library_size']} active"
    if "selfplay/proposals" in row:
        funnel = "/".join(str(row.get(f"{GATE_PREFIX}{g}{GATE_SUFFIX}", 0)) for g in GATES)
        text += f"  proposals {row['selfplay/proposals']} -> gates {funnel} -> admitted {row['selfplay/admitted']}"
    parts.append(text)


# -- plots -------------------------------------------------------------------------------------------
def write_plots(run_dir, out: Path) -> list[Path]:
    """library.png (size and retirements) and funnel.png (proposals through each gate)."""
    from matplotlib.figure import Figure

    rows = read_rows(run_dir)
    s = summarize(run_dir)
    plots = PlotFolder(out)
    library, retired = series(rows, "selfplay/library_size"), series(rows, "selfplay/retired")
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
        plots.save(fig, "library.png")
    if any(k == "selfplay/proposals" or k.startswith(GATE_PREFIX) for row in rows for k in row):
        labels = ["proposals", *s["funnel"]["gates"], "admitted"]
        counts = [s["funnel"]["proposals"], *s["funnel"]["gates"].values(), s["admitted"]]
        fig = Figure(figsize=(8, 4))
        ax = fig.add_subplot()
        bars = ax.bar(labels, counts, color=["tab:gray", *["tab:blue"] * (len(labels) - 2), "tab:green"])
        ax.bar_label(bars, labels=[str(c) for c in counts])
        ax.set(ylabel="proposals (cumulative)", title="Admission funnel")
        ax.set_ylim(0, max(1, max(counts)) * 1.15)
        plots.save(fig, "funnel.png")
    return plots.written


# -- the report page ----------------------------------------------------------------------------------
def key_figures(s: dict) -> list[Html]:
    lib = s["library"]
    return [figure("library", f"{num(lib['start'])} → {num(lib['end'])}", f"{s['admitted']} admitted, "
                   f"{s['retired']} retired"),
            figure("generator reward", num(s["generator_reward"]["mean"]),
                   f"mean; last {num(s['generator_reward']['last'])}")]


def html(s: dict, run_dir: Path, plot_paths: list[Path]) -> Html:
    entries, problem = read_library(run_dir)
    return join([funnel(s), held_out_generator(s.get("generator_heldout")), calibration(s.get("calibration")),
                 library(entries, problem), environments(entries)])


def funnel(s: dict) -> Html:
    f = s["funnel"]
    proposals = f["proposals"]

    def share(n: int) -> str:
        return f"{100 * n / proposals:.1f}%" if proposals else "-"

    rows = [["proposals", proposals, share(proposals)], *([g, n, share(n)] for g, n in f["gates"].items()),
            ["admitted", s["admitted"], share(s["admitted"])]]
    parts: list[Any] = [tag("p", "Proposals that passed each gate, cumulative over the run (% of all proposals)."),
                        table(["stage", "count", "% of proposals"], rows, numeric=[1, 2])]
    reasons = [[g, n, reason] for g, top in s.get("rejections", {}).items() for reason, n in top]
    if reasons:
        parts += [tag("h3", "Why proposals were rejected"),
                  tag("p", "The first gate each rejected proposal failed, most common reasons."),
                  table(["gate", "proposals", "reason"], reasons, numeric=[1])]
    return section("Admission funnel", *parts, id_="funnel")


def calibration(rows: list[dict] | None) -> Html:
    if not rows:
        return Html()
    return section("Calibration", table(["environment", "difficulty", "p", "inside the band", "from the cache"],
                                        [[r.get("env", "-"), num(r.get("difficulty")), num(r.get("p")),
                                          yes_no(r.get("in_band")), yes_no(r.get("cached"))] for r in rows],
                                        numeric=[1, 2]),
                   id_="calibration")


def held_out_generator(gen: dict | None) -> Html:
    """The generator's gate pass counts on fixed held-out prompts, before and after."""
    if not gen:
        return Html()
    b, a = gen.get("before", {}), gen.get("after", {})
    rows = [[g, num(b.get("gates", {}).get(g)), num(a.get("gates", {}).get(g))] for g in GATES]
    n = a.get("proposals", b.get("proposals"))
    return section("Generator on held-out prompts",
                   tag("p", f"{n} proposals to the same fixed prompts before and after training; nothing of "
                            "them is admitted or trained on."),
                   table(["gate", "passed before", "passed after"], rows, numeric=[1, 2]), id_="generator")


def _anchor(name: str) -> str:
    return f"env-{name}"


def library(entries: list, problem: str | None) -> Html:
    from envs.library import recent_pass_rate

    if problem:
        return section("Environment library", tag("p", f"the library could not be read: {problem}"), id_="library")
    if not entries:
        return Html()
    rows = []
    for e in entries:
        status = e.status if e.retired_step is None else f"{e.status} (step {e.retired_step})"
        cal = e.calibration if isinstance(e.calibration, dict) else {}
        rows.append([tag("a", e.name, href=f"#{_anchor(e.name)}"), e.kind, status, ", ".join(e.lineage) or "-",
                     num(cal.get("difficulty")), num(cal.get("p")), e.admitted_step, len(e.usage),
                     sum(int(u.get("count", 0)) for u in e.usage), num(recent_pass_rate(e, 0))])
    active = sum(e.status == "active" for e in entries)
    return section("Environment library",
                   tag("p", f"{len(entries)} environments, {active} active. Mean pass rate: weighted by rollouts "
                            "over every solver step that used the environment."),
                   table(["name", "kind", "status", "lineage", "difficulty", "calibration p", "admitted step",
                          "steps used", "rollouts", "mean pass rate"], rows, numeric=[4, 5, 6, 7, 8, 9]),
                   id_="library")


def _details_text(details: Any) -> str:
    if not details:
        return "-"
    text = json.dumps(details, sort_keys=True, default=str)
    return text if len(text) <= MAX_DETAILS else text[:MAX_DETAILS] + " …"


def environment(e) -> Html:
    gates = table(["gate", "verdict", "reason", "details"],
                  [[g.get("gate", "-"), tag("span", "PASS" if g.get("passed") else "FAIL",
                                            class_="pass" if g.get("passed") else "fail"),
                    g.get("reason", ""), _details_text(g.get("details"))] for g in e.gates if isinstance(g, dict)])
    parts = [tag("p", f"{e.kind}, {e.status}; admitted at step {e.admitted_step}"
                      f"{'' if e.retired_step is None else f', retired at step {e.retired_step}'}; "
                      f"lineage: {', '.join(e.lineage) or '-'}"),
             tag("h4", "Gate reports"), gates if e.gates else tag("p", "no gate reports (a seed environment)")]
    if e.calibration:
        parts += [tag("h4", "Calibration"), tag("pre", json.dumps(e.calibration, sort_keys=True, indent=1))]
    parts += [tag("h4", "Source"), tag("pre", tag("code", e.source))]
    return tag("details", join([tag("summary", f"{e.name} ({e.kind}, {e.status})"), *parts]), id_=_anchor(e.name))


def environments(entries: list) -> Html:
    if not entries:
        return Html()
    return section("Environments", tag("p", "Each environment's source and gate reports."),
                   join(environment(e) for e in entries), id_="environments")
