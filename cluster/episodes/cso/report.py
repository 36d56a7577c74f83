"""The report section of critical-step optimisation: the funnel from failed trajectories to preference
pairs, where the rollout budget went, the DPO updates, how the trained PRM agrees with Monte-Carlo values, and a
few of the pairs for a person to read.

Reads run_dir/metrics.jsonl (rows of kind cso), run_dir/cso_prm.json (the trained PRM's agreement, when there is
one) and run_dir/episodes/cso.jsonl (each failed trajectory: its steps, their scores, the expert's alternatives).
"""
from __future__ import annotations

import json
from pathlib import Path

from typing import Any

from cluster.rundir.figures import EDGE_STEPS, PlotFolder, edges, mean, num, of_kinds, series, total
from cluster.rundir.html import Html, images, section, table, tag
from cluster.rundir.html import num as cell
from cluster.rundir.metrics import read_rows

CSO_KINDS = ("cso",)
OWN_PLOTS = ("cso_funnel.png",)  # shown in this section rather than under Plots
PAIRS_KEY = "cso/pairs_kept"  # preference pairs a step trained on (sweep tables)
FUNNEL = (("failed_mined", "failed"), ("candidates", "critical"), ("alternatives", "alternatives"),
          ("flips", "flips"), ("pairs_kept", "pairs"))
STAGES = (("mine", "mining"), ("mc", "MC values"), ("expert", "expert"), ("branch", "branches"))
DPO_KEYS = ("margin", "accuracy", "chosen_reward", "rejected_reward")
PRM_KEYS = ("train_examples", "heldout_examples", "final_loss", "n", "mae", "pearson", "ranking", "sign_accuracy",
            "sign_accuracy_constant")
EXAMPLES = 3  # pairs shown: the first, middle and last kept in the run
MAX_TEXT = 400  # characters of a step's text kept in the summary
LEGEND = {"fontsize": 8, "loc": "lower center", "bbox_to_anchor": (0.5, 1.0), "ncol": 5, "frameon": False}  # above


def _clip(text, limit: int = MAX_TEXT) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def prm_agreement(run_dir: Path, rows: list[dict]) -> dict | None:
    """cso_prm.json, or else the prm/* metrics of the last step that trained the PRM; None when it never was."""
    path = run_dir / "cso_prm.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = None
        if isinstance(data, dict):
            return {k: data.get(k) for k in PRM_KEYS}
    trained = [r for r in rows if "prm/train_examples" in r]
    return {k: trained[-1].get(f"prm/{k}") for k in PRM_KEYS} if trained else None


def example_pairs(run_dir: Path, limit: int = EXAMPLES) -> list[dict]:
    """Up to `limit` kept pairs of episodes/cso.jsonl, spread over the run: the step the policy wrote (rejected) and
    the expert's alternative (chosen), each with its process score."""
    path = run_dir / "episodes" / "cso.jsonl"
    if not path.is_file():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        steps, scores = rec.get("steps") or [], rec.get("scores") or []
        for alt in rec.get("alternatives") or []:
            i = alt.get("step") if isinstance(alt, dict) else None
            if not alt or not alt.get("kept") or not isinstance(i, int) or not 0 <= i < min(len(steps), len(scores)):
                continue
            outcomes = alt.get("outcomes") or []
            kept.append({"step": rec.get("step"), "prompt": str(rec.get("prompt", ""))[:80], "index": i,
                         "rejected": _clip(steps[i]), "rejected_score": num(scores[i]),
                         "chosen": _clip(alt.get("text", "")), "chosen_score": num(alt.get("score")),
                         "branches": len(outcomes), "succeeded": sum(num(o) is not None and o >= 1.0 for o in outcomes)})
    if len(kept) <= limit:
        return kept
    picks = sorted({round(j * (len(kept) - 1) / (limit - 1)) for j in range(limit)}) if limit > 1 else [0]
    return [kept[j] for j in picks]


def summarize(run_dir) -> dict | None:
    """None for a run without cso episodes."""
    rows = read_rows(run_dir)
    run_dir = Path(run_dir)
    rows = of_kinds(rows, CSO_KINDS)
    if not rows:
        return None
    funnel = {key: total(rows, f"cso/{key}") for key, _ in FUNNEL}
    updates = sum(num(r.get("loss")) is not None for r in rows)
    dpo = {}
    for key in DPO_KEYS:
        values = [v for _, v in series(rows, f"dpo/{key}")]
        dpo[key] = {"mean": mean(values), "last": values[-1] if values else None}
    first, last = edges(series(rows, "reward/mean"))
    return {"steps": len(rows), "updates": updates, "no_update": len(rows) - updates, "funnel": funnel,
            "flip_rate": funnel["flips"] / funnel["alternatives"] if funnel["alternatives"] else None,
            "rollouts": {stage: total(rows, f"rollouts/{stage}") for stage, _ in STAGES},
            "rollouts_total": total(rows, "rollouts/total"), "tokens": total(rows, "rollout/tokens"),
            "dpo": dpo, "reward": {"first": first, "last": last},
            "scored_by": {"mc": sum(num(r.get("cso/prm_mc")) == 1.0 for r in rows),
                          "prm": sum(num(r.get("cso/prm_mc")) == 0.0 for r in rows)},
            "prm": prm_agreement(run_dir, rows), "examples": example_pairs(run_dir)}


def _f(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def step_parts(row: dict, parts: list[str]) -> None:
    """'failed 3 -> critical 3 -> alternatives 9 -> flips 2 -> pairs 1  prm mc  rollouts 48' (and 'no update (no pair
    kept)' in place of the loss of a step without a pair)."""
    if "cso/failed_mined" not in row:
        return
    if "loss" not in row:
        parts[-1] = "no update (no pair kept)"
    parts.append(f"failed {row['cso/failed_mined']} -> critical {row['cso/candidates']} -> alternatives "
                 f"{row['cso/alternatives']} -> flips {row['cso/flips']} -> pairs {row['cso/pairs_kept']}"
                 f"  prm {'mc' if row.get('cso/prm_mc') else 'model'}  rollouts {row['rollouts/total']}")


def key_figures(s: dict) -> list[Html]:
    return []


def funnel_line(s: dict) -> str:
    """'failed 24 -> critical 24 -> alternatives 61 -> flips 9 -> pairs 4'"""
    return " -> ".join(f"{label} {s['funnel'][key]}" for key, label in FUNNEL)


def _short(text: str, limit: int = 100) -> str:
    return json.dumps(_clip(" ".join(str(text).split()), limit), ensure_ascii=False)


def format_summary(s: dict) -> str:
    by, total = s["scored_by"], s["rollouts_total"]
    share = {stage: f" ({100 * n / total:.0f}%)" if total else "" for stage, n in s["rollouts"].items()}
    split = ", ".join(f"{label} {s['rollouts'][stage]}{share[stage]}" for stage, label in STAGES)
    lines = [(f"critical-step optimisation: {s['steps']} steps, {s['updates']} with a DPO update, {s['no_update']} "
              f"without (no pair kept); process rewards by Monte-Carlo on {by['mc']} steps, by the trained PRM / "
              f"judge on {by['prm']}"),
             (f"  success on the mined samples: {_f(s['reward']['first'])} -> {_f(s['reward']['last'])} (mean of the "
              f"first / last {EDGE_STEPS} steps)"),
             f"  funnel (run totals): {funnel_line(s)}   flip rate {_f(s['flip_rate'])} (flips / alternatives)",
             f"  rollouts: {total} sequences ({s['tokens']} tokens): {split}"]
    d = s["dpo"]
    if s["updates"]:
        lines.append(f"  DPO over {s['updates']} update{'s' if s['updates'] != 1 else ''} (each measured before its "
                     f"step): margin mean {_f(d['margin']['mean'])}, last "
                     f"{_f(d['margin']['last'])}; preference accuracy mean {_f(d['accuracy']['mean'], 2)}, last "
                     f"{_f(d['accuracy']['last'], 2)}")
    p = s["prm"]
    if p:
        lines.append(f"  PRM vs Monte-Carlo values on {p.get('heldout_examples') or 0} held-out steps (trained on "
                     f"{p.get('train_examples') or 0}): MAE {_f(p.get('mae'))}, Pearson {_f(p.get('pearson'), 2)}, "
                     f"ranking {_f(p.get('ranking'), 2)}, sign accuracy {_f(p.get('sign_accuracy'), 2)}"
                     + (f" (a constant PRM: {_f(p['sign_accuracy_constant'], 2)})"
                        if p.get("sign_accuracy_constant") is not None else ""))
    if s["examples"]:
        lines.append("  example pairs (the policy's step, rejected -> the expert's alternative, chosen):")
        for e in s["examples"]:
            lines += [f"    step {e['step']}, prompt {_short(e['prompt'], 80)}",
                      f"      rejected (step {e['index']}, score {_f(e['rejected_score'], 2)}): {_short(e['rejected'])}",
                      (f"      chosen   (score {_f(e['chosen_score'], 2)}, {e['succeeded']}/{e['branches']} "
                       f"branches succeed): {_short(e['chosen'])}")]
    return "\n".join(lines)


def write_plots(run_dir, out: Path) -> list[Path]:
    """cso_funnel.png: per step the funnel counts (bars) and the success on the mined samples (line); below it,
    when a step updated, the DPO margin and preference accuracy."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = read_rows(run_dir)
    rows = of_kinds(rows, CSO_KINDS)
    if not rows:
        return []
    plots = PlotFolder(out)
    margin, accuracy = series(rows, "dpo/margin"), series(rows, "dpo/accuracy")
    panels = 2 if margin or accuracy else 1
    fig = Figure(figsize=(min(14.0, max(7.0, 3 + 0.35 * len(rows))), 4 * panels))
    ax = fig.add_subplot(panels, 1, 1)
    steps = [r["step"] for r in rows]
    width = 0.8 / (len(FUNNEL) - 1)
    bars = [(key, label) for key, label in FUNNEL if key != "candidates"]  # critical = failed x candidates: no news
    for j, (key, label) in enumerate(bars):
        ax.bar([x + (j - (len(bars) - 1) / 2) * width for x in steps],
               [num(r.get(f"cso/{key}")) or 0 for r in rows], width=width, label=label)
    ax.set(xlabel="step", ylabel="count per step")
    ax.set_title("Critical-step optimisation: failed trajectories to preference pairs", pad=24)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    reward = series(rows, "reward/mean")
    handles, labels = ax.get_legend_handles_labels()
    if reward:
        twin = ax.twinx()
        handles += twin.plot(*zip(*reward), "ko-", label="success on mined samples")
        labels.append("success on mined samples")
        twin.set_ylabel("success rate")
        twin.set_ylim(0, 1.05)
    ax.legend(handles, labels, **LEGEND)
    if panels == 2:
        ax2 = fig.add_subplot(2, 1, 2, sharex=ax)
        handles = ax2.plot(*zip(*margin), "o-", color="tab:purple", label="DPO margin") if margin else []
        ax2.axhline(0, color="grey", lw=0.5)
        ax2.set(xlabel="step", ylabel="margin (beta x log-ratio gap)")
        ax2.set_title("DPO updates (steps with a pair)", pad=24)
        if accuracy:
            twin = ax2.twinx()
            handles += twin.plot(*zip(*accuracy), "s--", color="tab:green", label="preference accuracy")
            twin.set_ylabel("preference accuracy")
            twin.set_ylim(0, 1.05)
        ax2.legend(handles, [h.get_label() for h in handles], **LEGEND)
    plots.save(fig, "cso_funnel.png")
    return plots.written


def html(c: dict, run_dir: Path, plot_paths: list[Path]) -> Html:
    """Critical-step optimisation: the funnel, the rollout budget, the DPO updates, the PRM's agreement with
    Monte-Carlo values, a few of the pairs, and the funnel plot."""
    f, by = c["funnel"], c["scored_by"]
    parts: list[Any] = [
        tag("p", f"{c['steps']} steps, {c['updates']} with a DPO update and {c['no_update']} without (no pair kept); "
                 f"process rewards by Monte-Carlo continuations on {by['mc']} steps, by the trained PRM or judge on "
                 f"{by['prm']}. Success on the mined samples: {cell(c['reward']['first'])} → "
                 f"{cell(c['reward']['last'])} (mean of the first / last {EDGE_STEPS} steps)."),
        table(["stage", "run total", "what it counts"],
              [["failed", f["failed_mined"], "trajectories of the policy that failed, expanded"],
               ["critical", f["candidates"], "lowest-scored steps of those, where alternatives were tried"],
               ["alternatives", f["alternatives"], "one-step proposals of the expert at the critical steps"],
               ["flips", f["flips"], "alternatives from which a policy continuation succeeds"],
               ["pairs", f["pairs_kept"], "flips that also pass the score thresholds: DPO pairs"],
               ["flip rate", cell(c["flip_rate"]), "flips / alternatives"]], numeric=[1]),
        tag("h3", f"Rollout budget: {c['rollouts_total']} sequences, {c['tokens']} tokens"),
        table(["stage", "sequences", "share"],
              [[label, c["rollouts"][stage], f"{100 * c['rollouts'][stage] / c['rollouts_total']:.1f}%"
                if c["rollouts_total"] else "-"] for stage, label in STAGES], numeric=[1, 2])]
    if c["updates"]:
        d = c["dpo"]
        parts += [tag("h3", f"DPO over the {c['updates']} updates"),
                  table(["", "mean", "last"],
                        [[label, cell(d[key]["mean"]), cell(d[key]["last"])]
                         for key, label in (("margin", "margin"), ("accuracy", "preference accuracy"),
                                            ("chosen_reward", "chosen reward"), ("rejected_reward", "rejected reward"))],
                        numeric=[1, 2])]
    prm = c["prm"]
    if prm:
        parts += [tag("h3", "The trained PRM against Monte-Carlo values (held-out steps)"),
                  table(["train examples", "held-out examples", "final loss", "MAE", "Pearson", "ranking",
                         "sign accuracy", "a constant PRM's sign accuracy"],
                        [[cell(prm.get(k)) for k in ("train_examples", "heldout_examples", "final_loss", "mae",
                                                    "pearson", "ranking", "sign_accuracy", "sign_accuracy_constant")]],
                        numeric=range(8))]
    if c["examples"]:
        parts += [tag("h3", "Example pairs"),
                  table(["step", "prompt", "rejected: the policy's step", "score", "chosen: the expert's alternative",
                         "score", "branches succeeding"],
                        [[e["step"], e["prompt"], tag("code", f"[step {e['index']}] {e['rejected']}"),
                          cell(e["rejected_score"], 2), tag("code", e["chosen"]), cell(e["chosen_score"], 2),
                          f"{e['succeeded']}/{e['branches']}"] for e in c["examples"]], numeric=[0, 3, 5, 6])]
    parts.append(images(p for p in plot_paths if p.name in OWN_PLOTS))
    return section("Critical-step optimisation", *parts, id_="cso")
