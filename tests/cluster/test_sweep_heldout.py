"""The held-out comparison of a sweep's points: heldout_rows, heldout.csv, the printed table and the plot, from a
hand-made sweep folder (no Ray). Expected numbers are worked out by hand from the per-instance scores."""
import csv
import json
import math

import pytest
import yaml

from cluster.sweep import (
    heldout_rows,
    heldout_table,
    main,
    summarize,
    table,
    write_summary,
)

Z = 1.959963984540054  # the 95% normal quantile cluster.evaluation.stats uses


def _eval_row(task, accuracy, ci, scores=None, instances=None):
    row = {"task": task, "accuracy": accuracy, "accuracy_ci": ci, "exact": accuracy,
           "instances": instances if instances is not None else len(scores)}
    if scores is not None:
        row["scores"] = scores
    return row


def _point(sweep, num, overrides, metrics, before=None, after=None):
    run = sweep / str(num)
    run.mkdir(parents=True)
    (run / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    if before is not None:
        (run / "eval_before.json").write_text(json.dumps(before))
    if after is not None:
        (run / "eval_after.json").write_text(json.dumps(after))
    return run


# cso, arith: before 2/8 = 0.25, after 5/8 = 0.625, differences [1,0,0,1,0,0,0,1]: mean 3/8 = 0.375
CSO_ARITH = ([0, 0, 1, 0, 1, 0, 0, 0], [1, 0, 1, 1, 1, 0, 0, 1])
# cso, logic: before 2/4 = 0.5, after 3/4 = 0.75, differences [0, .5, 0, .5]: mean 0.25
CSO_LOGIC = ([0.5, 0, 1, 0.5], [0.5, 0.5, 1, 1])
# grpo, arith: before 4/6, after 3/6, differences [0,-1,0,0,0,0]: mean -1/6
GRPO_ARITH = ([1, 1, 0, 1, 0, 1], [1, 0, 0, 1, 0, 1])


def _paired_ci(before, after):
    """mean(after - before) -/+ z * sd / sqrt(n), written out independently of cluster.evaluation.stats."""
    diffs = [a - b for a, b in zip(after, before)]
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    return [mean - Z * sd / math.sqrt(n), mean + Z * sd / math.sqrt(n)]


@pytest.fixture
def sweep(tmp_path):
    sweep = tmp_path / "sweep"
    _point(sweep, 0, ["+method=cso", "steps=2"],
           [{"step": 0, "reward/mean": 0.2, "loss": 0.5, "rollouts/total": 16, "rollout/tokens": 1000,
             "cso/pairs_kept": 3},
            {"step": 1, "reward/mean": 0.4, "loss": 0.3, "rollouts/total": 16, "rollout/tokens": 1200,
             "cso/pairs_kept": 5}],
           before=[_eval_row("arith", 0.25, [0.07, 0.59], CSO_ARITH[0]),
                   _eval_row("logic", 0.5, [0.15, 0.85], CSO_LOGIC[0])],
           after=[_eval_row("arith", 0.625, [0.31, 0.86], CSO_ARITH[1]),
                  _eval_row("logic", 0.75, [0.30, 0.95], CSO_LOGIC[1])])
    _point(sweep, 1, ["+method=grpo", "steps=2"],
           [{"step": 0, "reward/mean": 0.1, "loss": 1.0, "rollouts/total": 8, "rollout/tokens": 500},
            {"step": 1, "reward/mean": 0.3, "loss": 0.8},  # a row without the totals' keys
            {"step": 3, "reward/mean": 0.5, "loss": 0.6, "rollouts/total": 16, "rollout/tokens": 700}],
           before=[_eval_row("arith", 4 / 6, [0.30, 0.90], GRPO_ARITH[0])],
           after=[_eval_row("arith", 0.5, [0.19, 0.81], GRPO_ARITH[1])])
    # eval files without per-instance scores (an older eval): the change has no interval
    _point(sweep, 2, ["+method=dpo", "steps=2"],
           [{"step": 0, "loss": 0.7, "dpo/pairs": 4}, {"step": 1, "loss": 0.6, "dpo/pairs": 6}],
           before={"results": [_eval_row("arith", 0.4, [0.2, 0.6], instances=20)]},
           after={"results": [_eval_row("arith", 0.5, [0.3, 0.7], instances=20)]})
    _point(sweep, 3, ["+method=sft", "steps=2"], [{"step": 0, "loss": 2.0}, {"step": 1, "loss": 1.5}])
    return sweep


def test_heldout_rows_compare_each_point_and_task(sweep):
    rows = heldout_rows(sweep)
    # the sft point has no eval files: skipped; the cso point has two tasks
    assert [(r["point"], r["task"]) for r in rows] == [
        ("+method=cso", "arith"), ("+method=cso", "logic"), ("+method=grpo", "arith"), ("+method=dpo", "arith")]
    cso_arith, cso_logic, grpo, dpo = rows

    assert (cso_arith["before"], cso_arith["after"], cso_arith["instances"]) == (0.25, 0.625, 8)
    assert (cso_arith["before_ci"], cso_arith["after_ci"]) == ([0.07, 0.59], [0.31, 0.86])
    assert cso_arith["delta"] == pytest.approx(0.375)
    assert cso_arith["delta_ci"] == pytest.approx(_paired_ci(*CSO_ARITH))
    assert cso_arith["delta_ci"] == pytest.approx([0.01636, 0.73364], abs=1e-5)
    assert cso_arith["significant"] is True  # the interval is above zero
    assert cso_logic["delta"] == pytest.approx(0.25)
    assert cso_logic["delta_ci"] == pytest.approx(_paired_ci(*CSO_LOGIC))
    assert cso_logic["significant"] is False  # [-0.033, +0.533] holds zero
    assert grpo["delta"] == pytest.approx(-1 / 6)
    assert grpo["delta_ci"] == pytest.approx(_paired_ci(*GRPO_ARITH))
    assert grpo["significant"] is False
    assert dpo["delta"] == pytest.approx(0.1)  # unpaired: after - before
    assert dpo["delta_ci"] is None and dpo["significant"] is None

    # training totals: each point counts the pairs key its family logs (cso/pairs_kept, dpo/pairs); rows without a key add nothing
    assert [(r["steps"], r["rollouts"], r["tokens"], r["pairs"]) for r in rows] == [
        (2, 32, 2200, 8), (2, 32, 2200, 8), (4, 24, 1200, None), (2, None, None, 10)]
    # the same point labels and step counts (last step + 1) as the summary
    summary = {r["point"]: r["steps"] for r in summarize(sweep)}
    assert {r["point"]: r["steps"] for r in rows} == {p: n for p, n in summary.items() if p != "+method=sft"}
    assert [r["run_dir"] for r in rows] == [str(sweep / n) for n in "0012"]


def test_no_eval_files_no_heldout_rows(sweep):
    for num in "012":
        for name in ("eval_before.json", "eval_after.json"):
            (sweep / num / name).unlink()
    assert heldout_rows(sweep) == []
    _, text = write_summary(sweep)
    assert text == table(summarize(sweep))  # the summary alone, as before
    assert not (sweep / "heldout.csv").exists()
    assert not (sweep / "plots").exists()


def test_only_one_eval_file_gives_no_change(sweep):
    (sweep / "1" / "eval_after.json").unlink()
    grpo = [r for r in heldout_rows(sweep) if r["point"] == "+method=grpo"]
    assert [(r["before"], r["after"], r["delta"]) for r in grpo] == [(pytest.approx(4 / 6), None, None)]
    assert "| +method=grpo | arith | 0.667 [0.30, 0.90] | - | - | 24 | - |" in heldout_table(grpo)


def test_write_summary_writes_csv_table_and_plot(sweep):
    path, text = write_summary(sweep)
    assert path == sweep / "summary.csv"

    with (sweep / "heldout.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["point"], r["task"], r["instances"], r["before"], r["after"]) for r in rows] == [
        ("+method=cso", "arith", "8", "0.25", "0.625"), ("+method=cso", "logic", "4", "0.5", "0.75"),
        ("+method=grpo", "arith", "6", str(4 / 6), "0.5"), ("+method=dpo", "arith", "20", "0.4", "0.5")]
    assert (rows[0]["before_ci_lo"], rows[0]["before_ci_hi"], rows[0]["after_ci_lo"], rows[0]["after_ci_hi"]) == (
        "0.07", "0.59", "0.31", "0.86")
    assert float(rows[0]["delta"]) == pytest.approx(0.375)
    assert [float(rows[0]["delta_ci_lo"]), float(rows[0]["delta_ci_hi"])] == pytest.approx(_paired_ci(*CSO_ARITH))
    assert [r["significant"] for r in rows] == ["True", "False", "False", ""]
    assert [(r["steps"], r["rollouts"], r["tokens"], r["pairs"]) for r in rows] == [
        ("2", "32", "2200", "8"), ("2", "32", "2200", "8"), ("4", "24", "1200", ""), ("2", "", "", "10")]
    assert (rows[3]["delta_ci_lo"], rows[3]["delta_ci_hi"]) == ("", "")

    summary, held = text.split("\n\nheld-out accuracy (")
    assert summary == table(summarize(sweep))  # the summary table comes first, unchanged
    lines = held.splitlines()
    assert lines[0] == f"{sweep / 'heldout.csv'}; plot: {sweep / 'plots' / 'heldout_comparison.png'}):"
    assert lines[1] == ("| point | task | before [95% CI] | after [95% CI] | change [95% CI] | rollouts | pairs |")
    assert lines[3] == "| +method=cso | arith | 0.250 [0.07, 0.59] | 0.625 [0.31, 0.86] | +0.375 [+0.016, +0.734] | 32 | 8 |"
    assert lines[4] == "| +method=cso | logic | 0.500 [0.15, 0.85] | 0.750 [0.30, 0.95] | +0.250 [-0.033, +0.533] | 32 | 8 |"
    assert lines[5] == "| +method=grpo | arith | 0.667 [0.30, 0.90] | 0.500 [0.19, 0.81] | -0.167 [-0.493, +0.160] | 24 | - |"
    assert lines[6] == "| +method=dpo | arith | 0.400 [0.20, 0.60] | 0.500 [0.30, 0.70] | +0.100 | - | 10 |"
    assert len(lines) == 7  # the sft point has no row

    plot = sweep / "plots" / "heldout_comparison.png"
    data = plot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # two tasks: two panels stacked, so the figure (3.8 in per panel + 0.6, at 100 dpi) is 820 px high
    assert int.from_bytes(data[20:24], "big") == 820


def test_cli_prints_both_tables(sweep, capsys):
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert f"sweep summary ({sweep / 'summary.csv'}):" in out
    assert "| point | reward/mean last | reward/mean best | loss | steps | run_dir |" in out
    assert f"| +method=sft | - | - | 1.5 | 2 | {sweep / '3'} |" in out
    assert f"held-out accuracy ({sweep / 'heldout.csv'}; plot: {sweep / 'plots' / 'heldout_comparison.png'}):" in out
    assert "| point | task | before [95% CI] | after [95% CI] | change [95% CI] | rollouts | pairs |" in out
    assert "| +method=grpo | arith | 0.667 [0.30, 0.90] | 0.500 [0.19, 0.81] | -0.167 [-0.493, +0.160] | 24 | - |" in out
    assert out.index("| point | reward/mean last") < out.index("| point | task |")
    assert (sweep / "heldout.csv").is_file() and (sweep / "plots" / "heldout_comparison.png").is_file()
