"""DeltaRubric: pairs, rewards and held-out measures by hand; the Bradley-Terry reward model on the tiny model; the
episode end to end on the real stack (embedded Ray on loopback, DeepSpeed over gloo, transformers rollout
workers, sandboxed executors, tiny models) with one policy (a scripted verifier: every verdict known in advance)
and with two policies, resumed mid-run."""
import json
import shutil

import pytest
import torch

from cluster.episodes.delta_rubric.episode import both_orders, build_pairs, judgement_metrics, shown, verifier_reward
from envs.rubric import direct_prompt, planner_prompt, verifier_prompt
from trainers.reward_model import RewardModelTrainer, bradley_terry_loss


def test_pairs_take_a_correct_answer_or_the_reference_and_a_wrong_one():
    instances = [{"prompt": "q1", "reference": "7"}, {"prompt": "q2", "reference": "9"},
                 {"prompt": "q3", "reference": "1"}]
    answers = [["6", "7", "8"], ["  ", "5", "4"], ["1", "1", "1"]]
    scores = [[0.0, 1.0, 0.0], [0.0, 0.0, 0.25], [1.0, 1.0, 1.0]]
    pairs = build_pairs(instances, answers, scores)
    assert pairs == [{"question": "q1", "chosen": "7", "rejected": "6", "chosen_source": "policy"},
                     {"question": "q2", "chosen": "9", "rejected": "5", "chosen_source": "reference"}]  # q3: no wrong
    assert shown(pairs[0], False) == ("7", "6", "A") and shown(pairs[0], True) == ("6", "7", "B")


def test_rewards_and_measures_by_hand():
    assert verifier_reward("A", "A", 0.1) == pytest.approx(1.1)
    assert verifier_reward("B", "A", 0.1) == pytest.approx(0.1) and verifier_reward(None, "A", 0.1) == 0.0
    m = judgement_metrics(["A", "B", None, "A"], ["A", "A", "B", "B"])
    assert m == {"accuracy": 0.25, "parsed": 0.75, "prefers_a": 0.5}
    # pair 0 right in both orders, pair 1 says A both times (position bias), pair 2 unparsed once
    r = both_orders(["A", "A", None], ["B", "A", "B"])
    assert r["hits"] == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0] and r["accuracy"] == pytest.approx(4 / 6)
    assert r["order_consistency"] == pytest.approx(1 / 3) and r["parsed"] == pytest.approx(5 / 6)


def test_prompts_show_both_responses_and_ask_for_the_verdict_line():
    p = planner_prompt("What is 2+2?", "4", "5", max_checks=2)
    assert "Response A:\n4" in p and "Response B:\n5" in p and "at most 2 short checks" in p
    v = verifier_prompt("What is 2+2?", "4", "5", "1. add")
    assert "Checklist:\n1. add" in v and v.endswith("'Preference: A' or 'Preference: B'.")
    assert "Checklist" not in direct_prompt("q", "a", "b")


def test_bradley_terry_loss_by_hand():
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    expected = (-torch.nn.functional.logsigmoid(torch.tensor(2.0)) + torch.log(torch.tensor(2.0))) / 2
    assert loss.item() == pytest.approx(expected.item())


def test_reward_model_learns_the_train_pairs(tiny_model_path, tmp_path):
    pairs = [(f"Repeat {d}:", str(d) * 3, "x" * 3) for d in range(8)]
    trainer = RewardModelTrainer(tiny_model_path, chat_template=False, lr=1e-3, seed=0)
    losses = trainer.train(pairs, epochs=15, batch_size=4)
    assert losses[-1] < losses[0] and sum(trainer.accuracy(pairs)) == len(pairs)
    trainer.save(tmp_path / "rm")
    from transformers import AutoModelForSequenceClassification

    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    assert loaded.config.num_labels == 1  # loads as a `scalar` judge of the pool


class _Engine:
    """The real transformers rollout backend on the tiny model, called in-process as a policy's generate() would
    be; it keeps every prompt it was given."""

    def __init__(self, path):
        from actors.rollout.hf_backend import HFBackend
        from cluster.config.schema import SamplingConfig

        self.backend, self.received = HFBackend(path), []
        self.tokenizer, self.sampling = self.backend.tokenizer, SamplingConfig()

    def generate(self, prompts, sampling, seed):
        self.received.append([list(p) for p in prompts])
        return {"samples": self.backend.generate(prompts, sampling, seed), "version": 3, "off_policy": False}


def test_forced_verdict_keeps_the_generated_ids_and_masks_only_the_written_prefix(tiny_model_path):
    from cluster.episodes.delta_rubric.config import DeltaRubricConfig
    from cluster.episodes.delta_rubric.episode import DeltaRubricEpisode

    episode = object.__new__(DeltaRubricEpisode)
    episode.dc = DeltaRubricConfig(verifier_max_new_tokens=6, verdict_max_new_tokens=2)
    engine = _Engine(tiny_model_path)
    prompts = [engine.tokenizer("Judge 1:", add_special_tokens=False).input_ids,
               engine.tokenizer("Judge two, please:", add_special_tokens=False).input_ids]
    answers, out = episode._verify(engine, prompts, n=3, temperature=1.0, seed=5)
    assert out == {"version": 3, "off_policy": False} and [len(g) for g in answers] == [3, 3]
    prefix = engine.tokenizer(episode.dc.verdict_prefix, add_special_tokens=False).input_ids
    first, second = engine.received  # the checks, then the verdict continuations
    assert first == prompts and len(second) == 6
    for k, (a, cont) in enumerate(zip([a for g in answers for a in g], second)):
        body = cont[len(prompts[k // 3]):len(cont) - len(prefix)]
        assert cont == prompts[k // 3] + body + prefix  # what the engine received for the verdict ...
        assert a["ids"][:len(body) + len(prefix)] == body + prefix  # ... is what the learner trains on
        verdict = a["ids"][len(body) + len(prefix):]
        assert 1 <= len(verdict) <= 2 and len(a["logprobs"]) == len(a["ids"]) == len(a["mask"])
        assert a["mask"] == [1] * len(body) + [0] * len(prefix) + [1] * len(verdict)
        assert a["logprobs"][len(body):len(body) + len(prefix)] == [0.0] * len(prefix)
        assert a["verdict"] in ("A", "B", None)


# -- end to end ----------------------------------------------------------------------------------------------------
BASE = ["schedule=[delta_rubric]", "algorithm.prompts_per_step=2", "episodes.delta_rubric.train_tasks=8",
        "episodes.delta_rubric.heldout_tasks=4", "episodes.delta_rubric.checklists=2",
        "episodes.delta_rubric.verifications=4", "episodes.delta_rubric.planner_max_new_tokens=8",
        "episodes.delta_rubric.verifier_max_new_tokens=8"]
SCRIPTED = ["episodes.delta_rubric.verdict_prefix=''"]  # a scripted verifier writes its own verdict line


def _records(run):
    return [json.loads(ln) for ln in (run / "episodes" / "delta_rubric.jsonl").read_text().splitlines()]


@pytest.mark.e2e
def test_shared_policy_with_a_scripted_verifier_accounts_every_reward(tmp_path):
    from tests.cluster.test_e2e import metrics, train

    run = tmp_path / "shared"
    proc = train(run, "steps=2", "save_every=0", "seed=1", "episodes.delta_rubric.reward_model_epochs=1",
                 "+scripted.verifier=['Preference: A','Preference: B','A','no verdict']", *BASE, *SCRIPTED)
    assert "verifier accuracy" in proc.stdout and "judge held-out before (4 pairs" in proc.stdout
    assert "planner + verifier" in proc.stdout  # the summary's judge table
    rows, records = metrics(run), _records(run)
    assert len(records) == 2 * 2 * 2  # steps x pairs x checklists
    for r in records:
        assert r["verdicts"] == ["A", "B", "A", None]
        assert r["verifier_rewards"] == pytest.approx([float(v == r["label"]) + (0.1 if v else 0.0)
                                                       for v in r["verdicts"]])
        assert r["planner_reward"] == pytest.approx(sum(v == r["label"] for v in r["verdicts"]) / 4)
    for row in rows:
        step = [r for r in records if r["step"] == row["step"]]
        assert row["verifier/reward/mean"] == pytest.approx(sum(sum(r["verifier_rewards"]) for r in step) / 16)
        assert row["planner/reward/mean"] == pytest.approx(sum(r["planner_reward"] for r in step) / 4)
        assert row["verifier/parsed"] == 0.75 and row["verifier/prefers_a"] == 0.5
    before = json.loads((run / "judge_eval_before.json").read_text())
    assert set(before["methods"]) == {"delta_rubric", "direct", "scalar_rm"} and before["pairs"] >= 1
    assert len(before["methods"]["delta_rubric"]["hits"]) == 2 * before["pairs"]  # both orders
    assert (run / "reward_model" / "config.json").is_file() and (run / "plots" / "judges.png").is_file()
    after = json.loads((run / "judge_eval_after.json").read_text())
    assert after["methods"]["scalar_rm"] == before["methods"]["scalar_rm"]  # trained once
    assert "change" in after["methods"]["delta_rubric"]


@pytest.mark.e2e
def test_two_policies_and_resume_reproduce_the_uninterrupted_run(tmp_path):
    from tests.cluster.test_e2e import metrics, train

    two = ["+policies.planner={}", "+policies.verifier.model.tiny_layers=1", "+roles.planner=planner",
           "+roles.verifier=verifier", "cluster.num_cpus=8", "episodes.delta_rubric.heldout_tasks=0",
           "+scripted.verifier=['Preference: A','B','x','Preference: B']", *BASE, *SCRIPTED,
           "episodes.delta_rubric.verifications=3",  # 3 of 4 cycled verdicts: the checklists of a pair score apart
           "episodes.delta_rubric.both_orders=true"]
    full, part = tmp_path / "full", tmp_path / "part"
    train(full, "steps=4", "save_every=3", "seed=6", *two)
    rows = metrics(full)
    assert rows[-1]["policy_version/verifier"] >= 1 and rows[-1]["policy_version/planner"] >= 1
    assert (full / "checkpoints" / "step_000003" / "episodes" / "delta_rubric" / "pairs.json").is_file()
    shutil.copytree(full, part, ignore=shutil.ignore_patterns("step_000004"))
    (part / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    train(part, "steps=4", "save_every=3", "seed=6", f"resume={part}", *two)
    b = metrics(part)
    records = _records(full)  # both_orders: 2 pairs x 2 orders x 2 checklists a step
    assert [r["step"] for r in b] == list(range(4)) and len(_records(part)) == len(records) == 32
    assert all(r["label"] == "AB"[r["pair"] % 2] for r in records)  # each pair shown as (chosen, rejected), then flipped
    for key in ("planner/reward/mean", "verifier/reward/mean", "planner/loss", "verifier/loss",
                "policy_version/planner", "policy_version/verifier"):
        assert [r.get(key) for r in rows[3:]] == pytest.approx([r.get(key) for r in b[3:]], abs=1e-6), key
