"""`evoforge report RUN`: one self-contained HTML page for a finished run (run_dir/report.html).

The page holds everything `cluster.reports.summary.summarize` knows about the run, its plots (written by
`write_plots`, embedded as base64 PNG data URIs), its held-out table with intervals and pass@k, the admission
funnel and rejection reasons, and, for a self-play run, the environment library with each environment's
source and gate reports. It needs no network: inline CSS, no scripts, no fonts, and a Content-Security-Policy
that forbids loading anything but the embedded images. Every piece of text is escaped with `html.escape`:
environment sources are model-written and must never inject markup.

A part the run lacks (no library, no eval files, no plots) is left out.

    evoforge report RUN [--out PATH]        same as `python -m cluster.reports.html RUN [--out PATH]`
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from cluster.episodes.coevolution import report as co_report
from cluster.reports.summary import EDGE_STEPS, GATES, summarize, write_plots

REPORT_FILE = "report.html"
LIBRARY_DIR = "library"
MAX_DETAILS = 400  # characters of a gate report's details shown in the page
CSO_PLOT = "cso_funnel.png"  # shown in the critical-step optimisation section, not under Plots

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1100px; margin: 0 auto; padding: 16px 24px; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; word-break: break-all; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 1.6em; }
.meta { color: #555; margin: 0; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; }
.figure { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; min-width: 180px; }
.figure .label { color: #666; font-size: 0.85em; }
.figure .value { font-size: 1.2em; font-weight: 600; }
.figure .note { color: #666; font-size: 0.85em; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.plots img { display: block; max-width: 100%; height: auto; margin: 8px 0; border: 1px solid #eee; }
details { border: 1px solid #ddd; border-radius: 6px; padding: 4px 10px; margin: 6px 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f7f7f7; border: 1px solid #e4e4e4; padding: 8px; overflow-x: auto; font-size: 0.85em; }
.pass { color: #1a7f37; } .fail { color: #b42318; }
footer { color: #888; font-size: 0.8em; margin-top: 2em; }
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


# -- small helpers ------------------------------------------------------------------------------------
VOID = {"img", "meta", "br"}  # elements without an end tag


class Html(str):
    """Markup that is already safe (built here from escaped parts); everything else gets escaped."""


def esc(value: Any) -> Html:
    return value if isinstance(value, Html) else Html(html.escape(str(value), quote=True))


def tag(name: str, body: Any = "", /, **attrs: Any) -> Html:
    """<name attrs>body</name>; body and attribute values are escaped unless already Html."""
    text = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items() if v is not None)
    return Html(f"<{name}{text}>" if name in VOID else f"<{name}{text}>{esc(body)}</{name}>")


def join(parts: Iterable[Any]) -> Html:
    return Html("".join(esc(p) for p in parts))


def num(value: Any, digits: int = 3, sign: bool = False) -> str:
    """A number as text, "-" for None (and for anything that is not a number)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def interval(ci: Any, digits: int = 3) -> str:
    """[low, high] as "[0.120, 0.380]", "-" when absent."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return "-"
    return f"[{num(ci[0], digits)}, {num(ci[1], digits)}]"


def yes_no(value: Any) -> str:
    return "-" if value is None else "yes" if value else "no"


def table(headers: list[str], rows: list[list[Any]], numeric: Iterable[int] = ()) -> Html:
    """A table; the cells of the columns in `numeric` are right-aligned."""
    numeric = set(numeric)
    head = tag("tr", join(tag("th", h) for h in headers))
    body = join(tag("tr", join(tag("td", c, class_="num" if i in numeric else None) for i, c in enumerate(r)))
                for r in rows)
    return tag("table", join([tag("thead", head), tag("tbody", body)]))


def section(title: str, *parts: Any, id_: str | None = None) -> Html:
    return tag("section", join([tag("h2", title), *parts]), id_=id_)


# -- reading the run ----------------------------------------------------------------------------------
def read_config(run_dir: Path) -> dict:
    """run_dir/config.yaml as a dict (empty when absent or unreadable)."""
    try:
        data = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def read_library(run_dir: Path) -> tuple[list, str | None]:
    """(entries, problem): the run's library entries, or [] and why they could not be read (None: no library)."""
    from envs.library import INDEX, Library, LibraryError

    folder = run_dir / LIBRARY_DIR
    if not (folder / INDEX).is_file():
        return [], None
    try:
        return Library.load(folder, autosave=False).all(), None
    except LibraryError as e:
        return [], str(e)


# -- the sections -------------------------------------------------------------------------------------
def header(run_dir: Path, config: dict) -> Html:
    def get(group: str, key: str) -> Any:
        return config[group].get(key) if isinstance(config.get(group), dict) else None

    selfplay = get("selfplay", "enabled")
    metrics = run_dir / "metrics.jsonl"
    finished = dt.datetime.fromtimestamp(metrics.stat().st_mtime) if metrics.is_file() else None
    facts = [("model", get("model", "name")), ("env", get("env", "name")), ("self-play", None if selfplay is None else yes_no(selfplay)),
             ("configured steps", config.get("steps")),
             ("last metrics", finished.strftime("%Y-%m-%d %H:%M") if finished else None)]
    line = " · ".join(f"{k}: {v}" for k, v in facts if v is not None)
    return tag("header", join([tag("h1", run_dir.resolve().name), tag("p", line, class_="meta"),
                               tag("p", f"run directory: {run_dir.resolve()}", class_="meta")]))


def _figure(label: str, value: str, note: str = "") -> Html:
    return tag("div", join([tag("div", label, class_="label"), tag("div", value, class_="value"),
                            tag("div", note, class_="note") if note else ""]), class_="figure")


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


def key_figures(s: dict) -> Html:
    figures = [_figure("steps", str(s["steps"]), f"{s['solver_steps']} solver, {s['generator_steps']} generator")]
    if s["solver_steps"]:
        figures.append(_figure("solver reward",
                               f"{num(s['solver_reward']['before'])} → {num(s['solver_reward']['after'])}",
                               f"mean of the first / last {EDGE_STEPS} solver steps"))
    if s["generator_steps"]:
        lib = s["library"]
        figures += [_figure("library", f"{num(lib['start'])} → {num(lib['end'])}",
                            f"{s['admitted']} admitted, {s['retired']} retired"),
                    _figure("generator reward", num(s["generator_reward"]["mean"]),
                            f"mean; last {num(s['generator_reward']['last'])}")]
    for r in s["held_out"]:
        figures.append(_figure(f"held-out {r['task']}", f"{num(r.get('before'))} → {num(r.get('after'))}",
                               _change_note(r)))
    return section("Key figures", tag("div", join(figures), class_="figures"), id_="figures")


def coevolution(co: dict | None) -> Html:
    """Co-evolution episodes: each role's reward, the critic against its baselines, held-out critic accuracy."""
    if not co:
        return Html()
    edge = co_report.EDGE_STEPS
    parts = [tag("p", f"Mean of the first / last {edge} steps of {co['steps']}."),
             table(["reward", "first", "last"],
                   [[role, num(v["first"]), num(v["last"])] for role, v in co["roles"].items()], numeric=[1, 2])]
    c = co["critic"]
    if c.get("accuracy", {}).get("first") is not None:
        labels = (("accuracy", "critic accuracy"), ("random_baseline", "random pick"),
                  ("majority_baseline", "majority vote"), ("maturity", "maturity"))
        parts += [tag("h3", "Critic on mixed groups (candidates that score differently)"),
                  table(["", "first", "last"], [[label, num(c[key]["first"]), num(c[key]["last"])]
                                                for key, label in labels], numeric=[1, 2])]
    judges = co_report.judge_rows(co)
    if judges:
        pairs = (co["judge"].get("after") or co["judge"].get("before"))["pairs"]

        def cells(e):
            return [num(e["accuracy"]), interval(e["accuracy_ci"]), num(e["order_consistency"])] if e else ["-"] * 3

        parts += [tag("h3", f"Judges on {pairs} held-out pairs (both A/B orders)"),
                  table(["method", "before", "95% CI", "order consistency", "after", "95% CI", "order consistency",
                         "change", "95% CI"],
                        [[r["method"], *cells(r["before"]), *cells(r["after"]),
                          num((r["change"] or {}).get("delta"), sign=True), interval((r["change"] or {}).get("delta_ci"))]
                         for r in judges], numeric=range(1, 9))]
    evals = [(tag_, e) for tag_, e in (("before", co["heldout"].get("before")), ("after", co["heldout"].get("after")))
             if e]
    if evals:
        change = (co["heldout"].get("after") or {}).get("change") or {}
        parts += [tag("h3", f"Critic on {evals[0][1]['sets']} held-out candidate sets (greedy pick)"),
                  table(["", "accuracy", "95% CI", "random pick", "majority vote", "no pick"],
                        [[t, num(e["accuracy"]), interval(e["accuracy_ci"]), num(e["random_baseline"]),
                          num(e["majority_baseline"]), num(e["no_pick"])] for t, e in evals], numeric=range(1, 6))]
        if change:
            parts.append(_paired_change(change))
        sampled = [(t, e["sampled"]) for t, e in evals if e.get("sampled")]
        if sampled:
            first = sampled[0][1]
            parts += [tag("h3", f"Critic's sampled picks ({first['samples']} per set at T={first['temperature']:g}): "
                                "its probability of a right pick"),
                      table(["", "accuracy", "95% CI"], [[t, num(e["accuracy"]), interval(e["accuracy_ci"])]
                                                         for t, e in sampled], numeric=[1, 2])]
            if sampled[-1][1].get("change"):
                parts.append(_paired_change(sampled[-1][1]["change"]))
    return section("Co-evolution", *parts, id_="coevolution")


def memory(m: dict | None) -> Html:
    """Memory-agent episodes: held-out accuracy by method, document length and task type; training per kind."""
    if not m:
        return Html()
    from cluster.episodes.memory.report import METHOD_NAMES

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
        parts.append(_paired_change(m["change"]))
    return section("Memory agents", *parts, id_="memory")


def cso(c: dict | None, plot_paths: list[Path]) -> Html:
    """Critical-step optimisation: the funnel, the rollout budget, the DPO updates, the PRM's agreement with
    Monte-Carlo values, a few of the pairs, and the funnel plot."""
    if not c:
        return Html()
    from cluster.episodes.cso.report import STAGES

    f, by = c["funnel"], c["scored_by"]
    parts: list[Any] = [
        tag("p", f"{c['steps']} steps, {c['updates']} with a DPO update and {c['no_update']} without (no pair kept); "
                 f"process rewards by Monte-Carlo continuations on {by['mc']} steps, by the trained PRM or judge on "
                 f"{by['prm']}. Success on the mined samples: {num(c['reward']['first'])} → "
                 f"{num(c['reward']['last'])} (mean of the first / last {EDGE_STEPS} steps)."),
        table(["stage", "run total", "what it counts"],
              [["failed", f["failed_mined"], "trajectories of the policy that failed, expanded"],
               ["critical", f["candidates"], "lowest-scored steps of those, where alternatives were tried"],
               ["alternatives", f["alternatives"], "one-step proposals of the expert at the critical steps"],
               ["flips", f["flips"], "alternatives from which a policy continuation succeeds"],
               ["pairs", f["pairs_kept"], "flips that also pass the score thresholds: DPO pairs"],
               ["flip rate", num(c["flip_rate"]), "flips / alternatives"]], numeric=[1]),
        tag("h3", f"Rollout budget: {c['rollouts_total']} sequences, {c['tokens']} tokens"),
        table(["stage", "sequences", "share"],
              [[label, c["rollouts"][stage], f"{100 * c['rollouts'][stage] / c['rollouts_total']:.1f}%"
                if c["rollouts_total"] else "-"] for stage, label in STAGES], numeric=[1, 2])]
    if c["updates"]:
        d = c["dpo"]
        parts += [tag("h3", f"DPO over the {c['updates']} updates"),
                  table(["", "mean", "last"],
                        [[label, num(d[key]["mean"]), num(d[key]["last"])]
                         for key, label in (("margin", "margin"), ("accuracy", "preference accuracy"),
                                            ("chosen_reward", "chosen reward"), ("rejected_reward", "rejected reward"))],
                        numeric=[1, 2])]
    prm = c["prm"]
    if prm:
        parts += [tag("h3", "The trained PRM against Monte-Carlo values (held-out steps)"),
                  table(["train examples", "held-out examples", "final loss", "MAE", "Pearson", "ranking",
                         "sign accuracy", "a constant PRM's sign accuracy"],
                        [[num(prm.get(k)) for k in ("train_examples", "heldout_examples", "final_loss", "mae",
                                                    "pearson", "ranking", "sign_accuracy", "sign_accuracy_constant")]],
                        numeric=range(8))]
    if c["examples"]:
        parts += [tag("h3", "Example pairs"),
                  table(["step", "prompt", "rejected: the policy's step", "score", "chosen: the expert's alternative",
                         "score", "branches succeeding"],
                        [[e["step"], e["prompt"], tag("code", f"[step {e['index']}] {e['rejected']}"),
                          num(e["rejected_score"], 2), tag("code", e["chosen"]), num(e["chosen_score"], 2),
                          f"{e['succeeded']}/{e['branches']}"] for e in c["examples"]], numeric=[0, 3, 5, 6])]
    parts.append(_images(p for p in plot_paths if p.name == CSO_PLOT))
    return section("Critical-step optimisation", *parts, id_="cso")


def _paired_change(change: dict) -> Html:
    return tag("p", f"change {num(change['delta'], sign=True)} {interval(change['delta_ci'])}: "
                    + co_report.change_verdict(change))


def _images(paths: Iterable[Path]) -> Html:
    images = [tag("img", "", src="data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii"),
                  alt=p.stem, title=p.name) for p in paths if p.is_file()]
    return tag("div", join(images), class_="plots") if images else Html()


def plots(paths: list[Path]) -> Html:
    """Every plot but those shown in their own section (CSO_PLOT)."""
    images = _images(p for p in paths if p.name != CSO_PLOT)
    return section("Plots", images, id_="plots") if images else Html()


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


def funnel(s: dict) -> Html:
    f = s["funnel"]
    if not (s["generator_steps"] or f["proposals"] or s["admitted"]):
        return Html()  # not a self-play run
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


def generator_heldout(gen: dict | None) -> Html:
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


# -- the page -----------------------------------------------------------------------------------------
def render(run_dir: Path, plot_paths: list[Path]) -> str:
    """The report page of the run in `run_dir` as a string."""
    s = summarize(run_dir)
    entries, problem = read_library(run_dir)
    body = join([header(run_dir, read_config(run_dir)), key_figures(s), plots(plot_paths),
                 coevolution(s.get("coevolution")), memory(s.get("memory")), cso(s.get("cso"), plot_paths),
                 held_out(s["held_out"]), funnel(s),
                 generator_heldout(s.get("generator_heldout")),
                 calibration(s.get("calibration")),
                 library(entries, problem), environments(entries),
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
               f"no metrics.jsonl in {args.run}" if not (run / "metrics.jsonl").is_file() else None)
    if problem:
        print(f"evoforge report: error: {problem}", file=sys.stderr)
        return 1
    print(f"wrote {write_report(run, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
