"""The end-of-run summary (the shared parts and self-play's section), from a synthetic metrics.jsonl."""
import json

import pytest

from cluster.episodes.selfplay.report import GATES
from cluster.reports.summary import format_summary, main, print_summary, summarize, write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write(run_dir, rows, before=None, after=None):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, data in (("eval_before.json", before), ("eval_after.json", after)):
        if data is not None:
            (run_dir / name).write_text(json.dumps(data))
    return run_dir


def _selfplay_rows():
    """Alternating generator (even) and solver (odd) steps; 4 proposals per generator step."""
    rows = []
    passed = {"parse": 4, "L1": 3, "L2": 3, "L3": 2, "novelty": 2, "L4": 1, "L5": 1}
    size = 10
    for step in range(12):
        if step % 2 == 0:
            size += 1
            rows.append({"step": step, "episode": "generator", "reward/mean": 0.9,
                         "selfplay/generator_reward": 0.1 * step, "selfplay/proposals": 4,
                         **{f"selfplay/gate/{g}/passed": n for g, n in passed.items()},
                         "selfplay/admitted": 1, "selfplay/retired": 0, "selfplay/library_size": size})
        else:
            retired = 1 if step == 11 else 0
            size -= retired
            rows.append({"step": step, "episode": "solver", "reward/mean": step / 20,
                         "selfplay/retired": retired, "selfplay/library_size": size})
    return rows


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000, path


def test_summary_numbers(tmp_path):
    before = [{"task": "rg_leg_counting", "accuracy": 0.25, "exact": 0.25, "instances": 32}]
    after = [{"task": "rg_leg_counting", "accuracy": 0.5, "exact": 0.375, "instances": 32},
             {"task": "repeat_digits", "accuracy": 0.75, "exact": 0.5, "instances": 32}]
    run = _write(tmp_path / "run", _selfplay_rows(), before, after)
    summary = summarize(run)
    s = summary["sections"]["selfplay"]
    assert (summary["steps"], summary["solver_steps"], s["generator_steps"]) == (12, 6, 6)
    assert summary["episodes"] == {"generator": 6, "solver": 6}
    assert s["funnel"] == {"proposals": 24, "gates": {"parse": 24, "L1": 18, "L2": 18, "L3": 12, "novelty": 12,
                                                      "L4": 6, "L5": 6}}
    assert list(s["funnel"]["gates"]) == list(GATES)
    assert (s["admitted"], s["retired"]) == (6, 1)
    assert s["library"] == {"start": 11, "end": 15}
    # solver steps 1,3,5 and 7,9,11 (generator rows' reward/mean is not the solver's)
    assert summary["solver_reward"]["before"] == pytest.approx((1 + 3 + 5) / 60)
    assert summary["solver_reward"]["after"] == pytest.approx((7 + 9 + 11) / 60)
    assert s["generator_reward"] == {"mean": pytest.approx(0.5), "last": pytest.approx(1.0)}
    keep = ("task", "instances", "before", "after", "exact_before", "exact_after", "delta")
    assert [{k: r.get(k) for k in keep} for r in summary["held_out"]] == [
        {"task": "rg_leg_counting", "instances": 32, "before": 0.25, "after": 0.5,
         "exact_before": 0.25, "exact_after": 0.375, "delta": 0.25},
        {"task": "repeat_digits", "instances": 32, "before": None, "after": 0.75,
         "exact_before": None, "exact_after": 0.5, "delta": None}]
    text = format_summary(summary)
    assert text.startswith("steps: 12 (6 generator, 6 solver)\nsolver reward: 0.150 -> 0.450")
    assert "L4              6   25.0%" in text and "library: 11 -> 15 environments (6 admitted, 1 retired)" in text
    assert "rg_leg_counting" in text and "0.250" in text and "0.500" in text


def test_held_out_change_against_its_interval(tmp_path):
    """Rows as cluster.evaluation.scoring.score_row writes them: the change is paired over the same instances."""
    from cluster.evaluation.scoring import score_row

    def row(scores, sampled):
        return score_row("rg_chain_sum", scores, [], [5] * len(scores), 1, 1234, sampled, 2)

    before = row([0.0] * 64, [[0.0, 0.0, 1.0, 0.0]] * 32 + [[0.0] * 4] * 32)
    after = row([1.0] * 12 + [0.0] * 52, [[1.0, 0.0, 1.0, 0.0]] * 32 + [[0.0] * 4] * 32)
    assert before["accuracy_ci"] == pytest.approx([0.0, 0.0566], abs=1e-3)
    assert before["pass_at_k"] == pytest.approx(0.5 * 0.5)  # pass@2 of 1-in-4 is 1/2, on half the instances
    assert after["pass_at_k"] == pytest.approx(0.5 * (1 - 1 / 6))
    run = _write(tmp_path / "run", _selfplay_rows(), [before], [after])
    (r,) = summarize(run)["held_out"]
    assert r["delta"] == pytest.approx(12 / 64) and r["significant"] and r["delta_ci"][0] > 0
    assert r["pass_delta"] == pytest.approx(after["pass_at_k"] - before["pass_at_k"]) and r["pass_significant"]
    text = format_summary(summarize(run))
    assert "greedy  0.000 [0.000, 0.057] -> 0.188 [0.111, 0.300]   change +0.188 [+0.091, +0.284]: larger " \
           "than its interval" in text
    assert "pass@2  0.250" in text
    # a smaller change made of flips both ways (18 gained, 12 lost) is within its interval
    run2 = _write(tmp_path / "run2", _selfplay_rows(), [row([0.0] * 52 + [1.0] * 12, None)],
                  [row([1.0] * 18 + [0.0] * 46, None)])
    (r2,) = summarize(run2)["held_out"]
    assert r2["delta"] == pytest.approx(6 / 64) and not r2["significant"] and "within its interval (could be noise)" in format_summary(summarize(run2))


def test_plots_are_png(tmp_path):
    run = _write(tmp_path / "run", _selfplay_rows())
    paths = write_plots(run)
    assert sorted(p.name for p in paths) == ["funnel.png", "library.png", "rewards.png"]
    for p in paths:
        assert p.parent == run / "plots"
        _assert_png(p)


def test_zero_proposals_funnel_shows_zeros(tmp_path, capsys):
    rows = [{"step": i, "episode": "generator", "selfplay/proposals": 0, "selfplay/library_size": 10}
            for i in range(3)]
    run = _write(tmp_path / "run", rows)
    s = print_summary(run)["sections"]["selfplay"]
    assert s["funnel"] == {"proposals": 0, "gates": {g: 0 for g in GATES}} and s["admitted"] == 0
    out = capsys.readouterr().out
    for gate in GATES:
        assert f"  {gate:<10}      0      -" in out
    paths = write_plots(run, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["funnel.png", "library.png"]  # no reward logged: no rewards.png
    for p in paths:
        _assert_png(p)


def test_missing_keys_are_skipped(tmp_path):
    """A plain training run (no self-play keys, no episode), with a null and a NaN reward."""
    rows = [{"step": 0, "reward/mean": 0.1}, {"step": 1, "reward/mean": None}, {"step": 2},
            {"step": 3, "reward/mean": float("nan")}, {"step": 4, "reward/mean": 0.3}]
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # NaN written as NaN
    s = summarize(run)
    assert s["solver_reward"] == {"before": pytest.approx(0.2), "after": pytest.approx(0.2)}
    assert s["sections"] == {} and s["roles"] is None and s["held_out"] == []
    text = format_summary(s)  # no self-play in the run: no funnel, no library
    assert text.splitlines() == ["steps: 5", "solver reward: 0.200 -> 0.200 (mean of the first / last 3 solver steps)"]
    assert "funnel" not in text and "library" not in text
    assert [p.name for p in write_plots(run)] == ["rewards.png"]
    empty = summarize(tmp_path / "nothing")  # no metrics.jsonl at all
    assert empty["steps"] == 0 and empty["solver_reward"] == {"before": None, "after": None}
    assert write_plots(tmp_path / "nothing") == []


def test_module_entry_point(tmp_path, capsys):
    run = _write(tmp_path / "run", _selfplay_rows())
    assert main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "admission funnel" in out and "wrote" in out
    assert main([str(tmp_path / "missing")]) == 1
