"""The process reward model trained on MC step values: it fits them (soft targets included), trains only its
head when asked, saves a folder the process judge loads with the same step scores, and its agreement measures
are right by hand."""
import math

import pytest
import torch

from actors.judge import LocalProcessRewardModel
from trainers.models import build_tiny_model, build_tiny_reward_model
from trainers.prm import ProcessRewardTrainer, agreement_metrics, step_prefix_text


@pytest.fixture(autouse=True)
def one_thread():
    """Trainers here run on one thread (threads=1): tiny models on a busy machine are far faster so."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _trainer(path, **kw) -> ProcessRewardTrainer:
    return ProcessRewardTrainer(path, chat_template=False, seed=0, threads=1, **kw)


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("prm") / "lm", "llama", 64, 2, 2, 1, 128, 0))


@pytest.fixture(scope="module")
def rm(tmp_path_factory) -> str:
    return str(build_tiny_reward_model(tmp_path_factory.mktemp("prm") / "rm", hidden=64, layers=1))


def _examples(digits: str) -> list[tuple[str, str, float]]:
    """A step ending in x always succeeds, one ending in y never does."""
    return [(f"Q{d}:", f"{d}\n{c}", 1.0 if c == "x" else 0.0) for d in digits for c in "xy"]


def test_training_fits_separable_step_values_and_soft_targets(lm):
    train, heldout = _examples("0123456"), _examples("789")
    trainer = _trainer(lm, lr=1e-3, trainable="all")
    before = trainer.agreement(heldout)
    losses = trainer.train(train, epochs=10, batch_size=4)
    after = trainer.agreement(heldout)
    assert len(losses) == 10 * 4 and losses[-1] < losses[0] / 4
    assert after["n"] == 6 and after["sign_accuracy"] == 1.0 and after["ranking"] == 1.0
    assert after["mae"] < min(0.2, before["mae"] / 2) and after["pearson"] > 0.9

    soft = [(f"Q{d}:", f"{d}\nz", 0.25) for d in range(8)]  # BCE against 0.25 settles at 0.25, not at 0 or 1
    trainer = _trainer(lm, lr=1e-3, trainable="all")
    trainer.train(soft, epochs=10, batch_size=4)
    scores = trainer.scores([p for p, _, _ in soft], [r for _, r, _ in soft])
    assert scores.shape == (8,) and torch.allclose(scores, torch.full((8,), 0.25), atol=0.03)


def test_head_only_training_leaves_the_backbone_alone(rm):
    trainer = _trainer(rm, lr=1e-2, trainable="head")
    assert [n for n, p in trainer.model.named_parameters() if p.requires_grad] == ["score.weight"]
    assert sum(p.numel() for g in trainer.optimizer.param_groups for p in g["params"]) == 64
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train(_examples("0123"), epochs=1, batch_size=4)
    after = trainer.model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["score.weight"]

    full = _trainer(rm, trainable="all")
    assert all(p.requires_grad for p in full.model.parameters())


def test_the_saved_prm_is_the_process_judge(lm, tmp_path):
    trainer = _trainer(lm, lr=1e-3, trainable="all")
    trainer.train(_examples("0123"), epochs=3, batch_size=4)
    trainer.save(tmp_path / "prm")
    judge = LocalProcessRewardModel(0, str(tmp_path / "prm"), threads=1, chat_template=False,
                                    step_separator="\n")
    [result] = judge.judge([{"prompt": "Q5:", "response": "a\nb\nx"}])
    prefixes = [step_prefix_text(t, "\n") for t in ("a\n", "a\nb\n", "a\nb\nx")]
    assert prefixes == ["a", "a\nb", "a\nb\nx"]
    mine = trainer.scores(["Q5:"] * 3, prefixes)
    assert result["step_scores"] == pytest.approx(mine.tolist(), abs=1e-5)
    assert len({round(s, 4) for s in mine.tolist()}) > 1  # the steps are told apart: a check with teeth

    resumed = ProcessRewardTrainer.from_folder(tmp_path / "prm", chat_template=False, threads=1)
    assert torch.allclose(resumed.scores(["Q5:"] * 3, prefixes), mine, atol=1e-5)


def test_step_prefix_text_drops_one_trailing_separator():
    assert step_prefix_text("a\nb\n\n", "\n") == "a\nb\n"
    assert step_prefix_text("a. b. ", ". ") == "a. b"
    assert step_prefix_text("a\nb", "\n") == "a\nb"
    with pytest.raises(ValueError, match="separator"):
        step_prefix_text("a", "")


def test_agreement_measures_by_hand():
    m = agreement_metrics([0.9, 0.5, 0.5, 0.2], [1.0, 0.5, 0.0, 0.0])
    # pairs with different values: (0,1) (0,2) (0,3) (1,3) ordered alike, (1,2) a score tie; (2,3) not counted
    assert m["n"] == 4 and m["ranking"] == pytest.approx(4.5 / 5)
    assert m["mae"] == pytest.approx((0.1 + 0.0 + 0.5 + 0.2) / 4)
    assert m["sign_accuracy"] == 0.75  # 0.5 >= 0.5 on both sides; 0.5 vs 0.0 disagrees
    assert m["pearson"] == pytest.approx(29 / 33)  # cov 0.3625 / sqrt(0.2475 * 0.6875)
    reversed_ = agreement_metrics([0.1, 0.4, 0.7], [1.0, 0.5, 0.0])
    assert reversed_["ranking"] == 0.0 and reversed_["pearson"] == pytest.approx(-1.0)

    flat_values = agreement_metrics([0.2, 0.7], [0.0, 0.0])  # no pair to rank, pearson undefined
    assert flat_values["ranking"] is None and flat_values["pearson"] is None and flat_values["sign_accuracy"] == 0.5
    flat_scores = agreement_metrics([0.5, 0.5, 0.5], [0.0, 0.5, 1.0])  # every pair a tie
    assert flat_scores["ranking"] == 0.5 and flat_scores["pearson"] is None
    assert agreement_metrics([], []) == {"n": 0, "mae": None, "pearson": None, "ranking": None,
                                         "sign_accuracy": None}
    with pytest.raises(ValueError, match="2 scores but 1 values"):
        agreement_metrics([0.1, 0.2], [0.0])


@pytest.mark.parametrize("value", [1.5, -0.1, math.nan, math.inf, None])
def test_bad_values_are_refused_before_any_step(rm, value):
    trainer = _trainer(rm, lr=1e-2, trainable="head")
    head = trainer.model.score.weight.clone()
    with pytest.raises(ValueError, match=rf"example 2: value {value!r} is not a probability"):
        trainer.train([("q", "a", 0.0), ("q", "b", 1.0), ("q", "c", value)], epochs=1)
    assert torch.equal(trainer.model.score.weight, head)
    with pytest.raises(ValueError, match="value"):
        trainer.agreement([("q", "c", value)])


def test_bad_arguments_name_themselves(rm):
    with pytest.raises(ValueError, match="trainable='backbone': use one of head, all"):
        _trainer(rm, trainable="backbone")
    trainer = _trainer(rm)
    with pytest.raises(ValueError, match="no examples"):
        trainer.train([], epochs=1)


def test_head_only_training_on_cached_features_gives_the_model_s_own_logits(tmp_path):
    """trainable=head trains on the frozen backbone's features computed once: they are what the whole model
    reads, so the head on them gives the model's logits."""
    folder = build_tiny_reward_model(tmp_path / "rm")
    t = ProcessRewardTrainer(str(folder), chat_template=False, trainable="head", threads=1)
    prompts, prefixes = ["p", "pp", "ppp"], ["a\nb", "a", "xyz\nq"]
    with torch.no_grad():
        direct = t.logits(prompts, prefixes)
        via_head = t.model.score(t._features(prompts, prefixes)).float()[:, 0]
    assert via_head.tolist() == pytest.approx(direct.tolist(), abs=1e-5)
    assert len(set(round(v, 4) for v in direct.tolist())) == 3  # the texts differ: the check can fail
