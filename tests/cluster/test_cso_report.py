"""The critical-step optimisation summary, plots and report section from hand-written run files."""
import json

import pytest
from matplotlib.image import imread

from cluster.episodes.cso import report as cso_report

from cluster.reports import summary as report
from cluster.reports.html import write_report

PROMPT = "Add the numbers 3, 4 and 5 one at a time, writing each running total on its own line. <b>bold</b> tail"


def _step(step, failed, alternatives, flips, pairs, mc, reward, rollouts, **extra):
    mine, mc_n, expert, branch = rollouts
    row = {"step": step, "episode": "solver", "kind": "cso", "reward/mean": reward, "cso/failed_mined": failed,
           "cso/candidates": failed, "cso/alternatives": alternatives, "cso/flips": flips, "cso/pairs_kept": pairs,
           "cso/prm_mc": mc, "rollouts/mine": mine, "rollouts/mc": mc_n, "rollouts/expert": expert,
           "rollouts/branch": branch, "rollouts/total": mine + mc_n + expert + branch, "rollout/tokens": 1000 * (step + 1)}
    if alternatives:
        row["cso/flip_rate"] = flips / alternatives
    return {**row, **extra}


def _dpo(loss, margin, accuracy):
    return {"loss": loss, "dpo/margin": margin, "dpo/accuracy": accuracy, "dpo/chosen_reward": margin / 2,
            "dpo/rejected_reward": -margin / 2}


PRM_ROW = {"prm/train_examples": 30, "prm/heldout_examples": 10, "prm/mae": 0.25, "prm/ranking": 0.6,
           "prm/sign_accuracy": 0.7}
PRM_FILE = {"train_examples": 30, "heldout_examples": 10, "final_loss": 0.4, "n": 10, "mae": 0.21, "pearson": None,
            "ranking": 0.7, "sign_accuracy": 0.8,
            "sign_accuracy_constant": 0.6}


def _alt(step, text, outcomes, score, kept):
    return {"step": step, "text": text, "outcomes": outcomes, "score": score, "kept": kept, "continuation": ""}


def _records():
    steps = ["3\n", "7\n", "13\n"]  # the last running total is wrong
    return [
        {"step": 0, "prompt": PROMPT, "response": "".join(steps), "steps": steps, "scores": [1.0, 0.5, 0.0],
         "candidates": [2, 1], "alternatives": [_alt(2, "12\n", [1.0, 0.0], 0.5, True),
                                                _alt(1, "8\n", [0.0, 0.0], 0.0, False)]},
        {"step": 1, "prompt": "no flips here", "response": "x", "steps": ["x"], "scores": [0.0], "candidates": [0],
         "alternatives": [_alt(0, "y", [0.0], 0.0, False)]},
        {"step": 3, "prompt": "p3", "response": "a\nb\n", "steps": ["a <i>\n", "b\n"], "scores": [0.25, 0.0],
         "candidates": [1, 0], "alternatives": [_alt(1, "second", [1.0, 1.0], 1.0, True),
                                                _alt(0, "third", [1.0], 1.0, True),
                                                _alt(7, "bad index: left out", [1.0], 1.0, True),
                                                _alt(1, "fourth", [1.0, 0.0, 1.0], 0.75, True)]},
    ]


@pytest.fixture
def run(tmp_path):
    rows = [_step(0, 4, 6, 2, 1, 1.0, 0.0, (16, 24, 6, 12), **_dpo(0.69, 0.1, 1.0)),
            _step(1, 3, 5, 0, 0, 1.0, 0.25, (16, 18, 5, 10), **PRM_ROW),
            _step(2, 2, 0, 0, 0, 0.0, 0.5, (16, 0, 0, 0)),
            _step(3, 2, 4, 3, 2, 0.0, 0.75, (16, 0, 4, 8), **_dpo(0.5, 0.3, 0.5))]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "cso_prm.json").write_text(json.dumps(PRM_FILE))
    (tmp_path / "episodes").mkdir()
    (tmp_path / "episodes" / "cso.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()))
    for tag, acc in (("before", 0.25), ("after", 0.5)):
        (tmp_path / f"eval_{tag}.json").write_text(json.dumps([{"task": "stepwise_sum", "accuracy": acc,
                                                                "instances": 16}]))
    return tmp_path


def test_totals_means_and_the_prm_agreement(run):
    s = cso_report.summarize(run)
    assert s["steps"] == 4 and s["updates"] == 2 and s["no_update"] == 2
    assert s["funnel"] == {"failed_mined": 11, "candidates": 11, "alternatives": 15, "flips": 5, "pairs_kept": 3}
    assert s["flip_rate"] == pytest.approx(5 / 15)
    assert s["rollouts"] == {"mine": 64, "mc": 42, "expert": 15, "branch": 30} and s["rollouts_total"] == 151
    assert s["tokens"] == 1000 + 2000 + 3000 + 4000
    assert s["dpo"]["margin"]["mean"] == pytest.approx(0.2) and s["dpo"]["margin"]["last"] == 0.3
    assert s["dpo"]["accuracy"]["mean"] == pytest.approx(0.75) and s["dpo"]["accuracy"]["last"] == 0.5
    assert s["dpo"]["rejected_reward"]["last"] == pytest.approx(-0.15)
    assert s["reward"]["first"] == pytest.approx(0.25) and s["reward"]["last"] == pytest.approx(0.5)
    assert s["scored_by"] == {"mc": 2, "prm": 2}
    assert s["prm"] == PRM_FILE  # the file wins over the step's prm/* metrics
    (run / "cso_prm.json").unlink()
    prm = cso_report.summarize(run)["prm"]
    assert prm["mae"] == 0.25 and prm["sign_accuracy"] == 0.7 and prm["pearson"] is None


def test_example_pairs_are_spread_over_the_kept_ones(run):
    examples = cso_report.summarize(run)["examples"]
    # kept with a valid step index: 12, second, third, fourth; three shown: the first, the middle, the last
    assert [e["chosen"] for e in examples] == ["12\n", "third", "fourth"]
    first = examples[0]
    assert first["prompt"] == PROMPT[:80] and len(PROMPT) > 80
    assert (first["step"], first["index"], first["rejected"], first["rejected_score"]) == (0, 2, "13\n", 0.0)
    assert (first["chosen_score"], first["succeeded"], first["branches"]) == (0.5, 1, 2)
    assert (examples[1]["rejected"], examples[1]["rejected_score"]) == ("a <i>\n", 0.25)
    assert len(cso_report.example_pairs(run, limit=5)) == 4


def test_format_summary_reads_as_a_funnel(run):
    text = cso_report.format_summary(cso_report.summarize(run))
    assert "failed 11 -> critical 11 -> alternatives 15 -> flips 5 -> pairs 3" in text
    assert "flip rate 0.333" in text and "2 with a DPO update, 2 without" in text
    assert "151 sequences (10000 tokens): mining 64 (42%), MC values 42 (28%), expert 15 (10%), branches 30 (20%)" in text
    assert "margin mean 0.200, last 0.300; preference accuracy mean 0.75, last 0.50" in text
    assert "on 10 held-out steps (trained on 30): MAE 0.210, Pearson -, ranking 0.70, sign accuracy 0.80 (a constant PRM: 0.60)" in text
    assert 'rejected (step 2, score 0.00): "13"' in text and 'chosen   (score 0.50, 1/2 branches succeed): "12"' in text


def test_plots_have_a_dpo_panel_only_with_updates(run, tmp_path):
    written = cso_report.write_plots(run, run / "plots")
    assert written == [run / "plots" / "cso_funnel.png"]
    two = imread(written[0]).shape[0]
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        for key in ("loss", "dpo/margin", "dpo/accuracy"):
            r.pop(key, None)
    other = tmp_path / "no_updates"
    other.mkdir()
    (other / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    one = imread(cso_report.write_plots(other, other / "plots")[0]).shape[0]
    assert two == 2 * one  # 8 inches against 4
    assert cso_report.summarize(other)["updates"] == 0


def test_the_run_summary_of_a_cso_run_shows_the_section_and_the_held_out_table(run):
    summary = report.summarize(run)
    assert summary["sections"]["cso"]["funnel"]["pairs_kept"] == 3
    text = report.format_summary(summary)
    assert text.startswith("steps: 4\nsolver reward: ") and "\n\ncritical-step optimisation: 4 steps" in text
    assert "failed 11 -> critical 11 -> alternatives 15 -> flips 5 -> pairs 3" in text
    assert "stepwise_sum (16 instances)" in text and "greedy  0.250 -> 0.500   change +0.250" in text
    assert "cso_funnel.png" in [p.name for p in report.write_plots(run)]


def test_a_mixed_run_keeps_its_reward_line_and_adds_the_section(run):
    rows = (run / "metrics.jsonl").read_text() + json.dumps({"step": 4, "episode": "solver", "kind": "task",
                                                             "reward/mean": 1.0}) + "\n"
    (run / "metrics.jsonl").write_text(rows)
    text = report.format_summary(report.summarize(run))
    assert text.startswith("steps: 5") and "pairs 3" in text and "greedy  0.250 -> 0.500" in text


def test_the_report_page_has_the_section_with_its_plot(run):
    page = write_report(run).read_text()
    start = page.index('<section id="cso">')
    section = page[start:page.index("</section>", start)]
    assert "<h2>Critical-step optimisation</h2>" in section
    assert '<td>failed</td><td class="num">11</td>' in section and '<td>pairs</td><td class="num">3</td>' in section
    assert '<td>flip rate</td><td class="num">0.333</td>' in section
    assert '<td>MC values</td><td class="num">42</td><td class="num">27.8%</td>' in section
    assert '<td class="num">0.210</td>' in section and '<td class="num">0.800</td>' in section  # PRM: MAE, sign
    assert "[step 2] 13" in section and "<code>12\n</code>" in section and "&lt;b&gt;bold" not in section  # prompt cut at 80
    assert "a &lt;i&gt;" in section and "<i>" not in section
    assert section.count('alt="cso_funnel"') == 1 and page.count('alt="cso_funnel"') == 1  # not under Plots too
    assert 'alt="rewards"' in page and 'id="held-out"' in page


def test_runs_without_cso_rows_have_no_section(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 0, "kind": "task", "reward/mean": 0.5}) + "\n")
    assert cso_report.summarize(tmp_path) is None and "cso" not in report.summarize(tmp_path)["sections"]
    assert cso_report.write_plots(tmp_path, tmp_path / "plots") == []
    assert 'id="cso"' not in write_report(tmp_path).read_text()
