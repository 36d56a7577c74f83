"""The co-evolution families' report sections (each role's rewards, the critic) from a run directory's files."""
import json

from cluster.episodes.propose_critic import report as critic_report
from cluster.reports import roles
from cluster.reports.summary import format_summary, summarize, write_plots
from cluster.reports.html import render


def _run(tmp_path, steps=5, heldout=True):
    rows = []
    for s in range(steps):
        rows.append({"step": s, "kind": "propose_critic", "episode": "propose_critic",
                     "proposer/reward/mean": 0.1 * s, "critic/reward/mean": 0.2 + 0.05 * s,
                     "critic/accuracy": 0.3 + 0.1 * s, "critic/random_baseline": 0.4,
                     "critic/majority_baseline": 0.5, "maturity": 0.05 * s})
    rows[1].pop("critic/accuracy")  # a step without mixed groups
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if heldout:
        for tag, acc in (("before", 0.25), ("after", 0.5)):
            row = {"tag": tag, "sets": 8, "k": 4, "accuracy": acc, "accuracy_ci": [acc - 0.2, acc + 0.2],
                   "random_baseline": 0.3, "majority_baseline": 0.6, "no_pick": 0.125, "hits": []}
            row["sampled"] = {"samples": 8, "temperature": 1.0, "accuracy": acc - 0.05,
                              "accuracy_ci": [acc - 0.15, acc + 0.05], "rates": []}
            if tag == "after":
                row["change"] = {"delta": 0.25, "delta_ci": [0.05, 0.45], "significant": True}
                row["sampled"]["change"] = {"delta": 0.1, "delta_ci": [-0.02, 0.22], "significant": False}
            (tmp_path / f"critic_eval_{tag}.json").write_text(json.dumps(row))
    return tmp_path


def test_summary_means_the_edge_steps_per_role_and_reads_the_heldout_files(tmp_path):
    summary = summarize(_run(tmp_path))
    r = summary["roles"]
    assert r["steps"] == 5 and set(r["roles"]) == {"proposer", "critic"}
    proposer = r["roles"]["proposer"]  # (0 + .1 + .2) / 3, (.2 + .3 + .4) / 3
    assert abs(proposer["first"] - 0.1) < 1e-9 and abs(proposer["last"] - 0.3) < 1e-9
    s = summary["sections"]["propose_critic"]
    assert s["steps"] == 5 and abs(s["critic"]["accuracy"]["first"] - (0.3 + 0.5 + 0.6) / 3) < 1e-9  # step 1: none
    text = format_summary(summary)
    assert text.startswith("steps: 5\n\nroles: 5 steps of several-role episodes")
    assert "propose-then-critic: 5 steps" in text
    assert "critic on 8 held-out candidate sets" in text and "change  +0.250 [+0.050, +0.450]: larger than" in text
    assert "sampled picks (8 per set at T=1)" in text and "after   accuracy 0.450 [0.350, 0.550]" in text
    assert "change  +0.100 [-0.020, +0.220]: within its interval" in text
    assert "majority vote" in text and "reward: -" not in text  # no solver rows: no empty solver line
    names = sorted(p.name for p in write_plots(tmp_path))
    assert names == ["critic.png", "roles.png"]
    page = render(tmp_path, [])
    assert 'id="roles"' in page and 'id="propose-critic"' in page and "held-out candidate sets" in page
    assert "solver reward" not in page
    assert "sampled picks (8 per set at T=1)" in page and "+0.100" in page


def test_runs_without_coevolution_rows_have_no_section(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 0, "reward/mean": 0.5}) + "\n")
    rows = [json.loads((tmp_path / "metrics.jsonl").read_text())]
    assert critic_report.summarize(tmp_path) is None and roles.summarize(rows) is None
    assert roles.write_plots(rows, tmp_path / "plots") == []
    page = render(tmp_path, [])
    assert 'id="propose-critic"' not in page and 'id="roles"' not in page
