"""The R-Zero challenger: pseudo-labels, uncertainty and repetition by hand; the episode end to end on the real
stack (embedded Ray on loopback, DeepSpeed over gloo, transformers rollout workers, sandboxed executors, tiny
models) with one policy and scripted roles (every reward known in advance), and with two policies, resumed."""
import json
import shutil

import pytest

from cluster.episodes.challenger.episode import challenger_rewards, in_band
from envs.challenge import (
    arithmetic_answer,
    challenger_prompt,
    pseudo_label,
    question_text,
    repetition_clusters,
    repetition_penalties,
)


def test_pseudo_label_is_the_majority_and_p_its_share_of_all_answers():
    assert pseudo_label(["7", "7", "Answer: 7", "8", "", "9", "7", "x"]) == ("7", 0.5)
    assert pseudo_label(["", "  "]) == (None, 0.0)


def test_repetition_clusters_and_penalties_by_hand():
    qs = ["What is 3+4?", "what is  3+4?", "Name a colour.", "Spell cat backwards."]
    assert repetition_clusters(qs, 0.9) == [0, 0, 2, 3]
    assert repetition_penalties(qs, 0.9, 1.0) == [0.5, 0.5, 0.0, 0.0]  # a cluster of 2 in a batch of 4
    # empty questions: reward 0, outside the batch the penalty counts
    rewards, penalties = challenger_rewards(["What is 3+4?", "", "what is 3+4?", "Name it."], [0.5, 0.0, 0.25, 1.0],
                                            0.9, 1.0)
    assert penalties == [pytest.approx(2 / 3), 0.0, pytest.approx(2 / 3), 0.0]
    assert rewards == [pytest.approx(0.5 - 2 / 3), 0.0, pytest.approx(0.25 - 2 / 3), 0.0]
    assert in_band(0.3, [0.3, 0.7]) and in_band(0.7, [0.3, 0.7]) and not in_band(0.75, [0.3, 0.7])


def test_question_text_prompt_and_arithmetic_checker():
    assert question_text("Question: What is 2+2?\n\nAnswer: 4") == "What is 2+2?"
    assert question_text("\n\n  ") == ""
    p = challenger_prompt(["1 + 2 =", "3 - 1 ="], "one-digit sums")
    assert p.startswith("Task family: one-digit sums\nExample: 1 + 2 =\nExample: 3 - 1 =\n\nWrite one new question")
    assert arithmetic_answer("State the final answer to the following arithmetic problem: 5 - 9 =") == "-4"
    assert arithmetic_answer("What is (3 + 4) * 2?") == "14" and arithmetic_answer("What is 7/2?") == "7/2"
    assert arithmetic_answer("What is 1/0?") is None and arithmetic_answer("Name a colour.") is None


# -- end to end ----------------------------------------------------------------------------------------------------
BASE = ["schedule=[challenger]", "algorithm.prompts_per_step=2", "episodes.challenger.answers=8",
        "episodes.challenger.max_new_tokens=16", "episodes.challenger.checker=arithmetic"]


def _records(run):
    return [json.loads(ln) for ln in (run / "episodes" / "challenger.jsonl").read_text().splitlines()]


@pytest.mark.e2e
def test_shared_policy_scripted_roles_account_every_reward(tmp_path):
    from tests.cluster.test_e2e import metrics, train

    run = tmp_path / "shared"
    train(run, "steps=2", "save_every=0", "seed=1", *BASE,
          "+scripted.challenger=['Question: What is 2 + 3?','What is 2 + 3?','Name a colour.','']",
          "+scripted.solver=['5','5','6','7']")
    rows, records = metrics(run), _records(run)
    assert len(records) == 2 * 2 * 4  # steps x prompts x questions per prompt (rollout.sampling.n)
    # a step asks 6 questions (2 prompts x 3 non-empty): "What is 2 + 3?" 4 times, "Name a colour." twice
    for r in records[:8]:
        if r["question"] == "What is 2 + 3?":
            assert (r["label"], r["p"], r["truth"]) == ("5", 0.5, "5")
            assert r["penalty"] == pytest.approx(4 / 6) and r["reward"] == pytest.approx(0.5 - 4 / 6)
        elif r["question"] == "Name a colour.":
            assert r["truth"] is None and r["penalty"] == pytest.approx(2 / 6)
            assert r["reward"] == pytest.approx(0.5 - 2 / 6)
        else:
            assert r["question"] == "" and r["reward"] == 0.0 and r["answers"] == []
    row = rows[0]
    assert row["challenger/empty_fraction"] == 0.25 and row["solver/in_band_fraction"] == 1.0
    assert row["solver/reward/mean"] == 0.5  # half of each question's answers are its label
    assert row["pseudo_label/accuracy"] == 1.0 and row["pseudo_label/checked"] == pytest.approx(2 / 3)
    assert row["challenger/reward/mean"] == pytest.approx((4 * (0.5 - 4 / 6) + 2 * (0.5 - 2 / 6)) / 8)
    assert row["challenger/duplicate_fraction"] == 0.75  # 6 of 8 questions are in a cluster of 2 or more


@pytest.mark.e2e
def test_two_policies_and_resume_reproduce_the_uninterrupted_run(tmp_path):
    from tests.cluster.test_e2e import metrics, train

    # the solver's scripted answers cycle with a period that does not divide m: its agreement differs per question
    two = ["+policies.challenger={}", "+policies.solver.model.tiny_layers=1", "+roles.challenger=challenger",
           "+roles.solver=solver", "cluster.num_cpus=8", "+scripted.solver=['5','5','6']",
           "episodes.challenger.repetition_threshold=1.0", *BASE]
    full, part = tmp_path / "full", tmp_path / "part"
    train(full, "steps=4", "save_every=3", "seed=2", *two)
    rows = metrics(full)
    assert rows[-1]["policy_version/challenger"] >= 1 and rows[-1]["policy_version/solver"] >= 1
    shutil.copytree(full, part, ignore=shutil.ignore_patterns("step_000004"))
    (part / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    train(part, "steps=4", "save_every=3", "seed=2", f"resume={part}", *two)
    b = metrics(part)
    assert [r["step"] for r in b] == list(range(4)) and len(_records(part)) == len(_records(full))
    for key in ("challenger/reward/mean", "solver/in_band_fraction", "challenger/loss", "solver/loss",
                "policy_version/challenger", "policy_version/solver"):
        assert [r.get(key) for r in rows[3:]] == pytest.approx([r.get(key) for r in b[3:]], abs=1e-6), key
