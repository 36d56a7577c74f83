"""The objective registry: lookup, what each objective declares, its loss against the plain formulas, and how
micro-step metrics combine over micro batches and ranks."""
import pytest
import torch

from trainers.batch import Trajectory
from trainers.logprobs import token_logprobs
from trainers.losses import PolicyLossConfig
from trainers.models import load_causal_lm
from trainers.objectives import (
    OBJECTIVES,
    LossSettings,
    MetricAccumulator,
    get_objective,
    merge_rank_metrics,
    response_logprob_sums,
)
from trainers.preference import PreferenceConfig, dpo_loss


def test_registry_and_declarations():
    assert sorted(OBJECTIVES) == ["dpo", "grpo", "sft"]
    with pytest.raises(ValueError, match="unknown objective 'x': use grpo, dpo or sft"):
        get_objective("x")
    grpo, dpo, sft = (get_objective(n) for n in ("grpo", "dpo", "sft"))
    assert (grpo.rows_per_unit, dpo.rows_per_unit, sft.rows_per_unit) == (1, 2, 1)
    assert (grpo.uses_behaviour_logprobs, dpo.uses_behaviour_logprobs, sft.uses_behaviour_logprobs) == (True, False, False)
    s = LossSettings()
    assert (grpo.count(s), dpo.count(s), sft.count(s)) == ("tokens", "pairs", "tokens")
    assert grpo.count(LossSettings(policy=PolicyLossConfig(aggregation="seq_sum"))) == "sequences"
    assert not grpo.needs_reference(s) and grpo.needs_reference(LossSettings(policy=PolicyLossConfig(kl_coef=0.1)))
    assert dpo.needs_reference(s) and not sft.needs_reference(s)
    assert [o.zero_advantage_is_no_signal for o in (grpo, dpo, sft)] == [True, False, False]
    assert dpo.reported_metrics == sft.reported_metrics == {"loss": 0.0, "grad_norm": 0.0}
    assert {"pg_loss", "kl", "update/flat_groups"} <= set(grpo.reported_metrics) and grpo.reported_metrics["ratio_max"] == 1.0
    with pytest.raises(ValueError, match="'ipo2'"):
        dpo.check(LossSettings(dpo=PreferenceConfig(loss_type="ipo2")))
    with pytest.raises(ValueError, match="'token_sum'"):
        grpo.check(LossSettings(policy=PolicyLossConfig(aggregation="token_sum")))


def test_collate_per_objective():
    ts = [Trajectory([1, 2], [3, 4], [], pair_id=0, chosen=False), Trajectory([1, 2], [5], [], pair_id=0, chosen=True)]
    assert get_objective("dpo").collate(ts, 0).input_ids[:, 2].tolist() == [5, 3]  # chosen first
    assert get_objective("sft").collate(ts, 0).unit == 1
    with pytest.raises(ValueError, match="behaviour_logprobs"):
        get_objective("grpo").collate(ts, 0)


@pytest.fixture(scope="module")
def models(tiny_model_path):
    model = load_causal_lm(tiny_model_path)
    ref = load_causal_lm(tiny_model_path).requires_grad_(False)
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(1.1)
    return model, ref


def _pairs():
    return [Trajectory([7, 8, 9], [10, 11, 12], [], pair_id=0, chosen=True, loss_mask=[1, 0, 1]),
            Trajectory([7, 8, 9], [13, 14], [], pair_id=0, chosen=False),
            Trajectory([20], [21], [], pair_id=5, chosen=True),
            Trajectory([20], [22, 23, 24, 25], [], pair_id=5, chosen=False)]


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_objective_is_dpo_loss_on_masked_sequence_logprobs(models, loss_type):
    """Sums over the response tokens for sigmoid, means for ipo, loss-masked; temperature ignored (1)."""
    model, ref = models
    batch = get_objective("dpo").collate(_pairs(), 0)
    settings = LossSettings(dpo=PreferenceConfig(beta=0.3, loss_type=loss_type))
    loss, metrics = get_objective("dpo").loss(model, batch, settings, None, 0.5, ref)

    def per_seq(m):
        lp = token_logprobs(m(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits, batch.input_ids)
        total = (lp * batch.loss_mask).sum(1)
        return total / batch.loss_mask.sum(1) if loss_type == "ipo" else total

    with torch.no_grad():
        pi, rf = per_seq(model), per_seq(ref)
    # the masked-out middle token of the first chosen response does not count: 2 of its 3 tokens
    assert batch.loss_mask.sum(1).tolist() == [2.0, 2.0, 1.0, 4.0]
    expected, em = dpo_loss(pi[0::2], pi[1::2], rf[0::2], rf[1::2], beta=0.3, loss_type=loss_type)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    for k in ("loss", "margin", "accuracy", "chosen_reward", "rejected_reward"):
        assert metrics[f"dpo/{k}"] == pytest.approx(em[k], rel=1e-5, abs=1e-7)
    torch.testing.assert_close(response_logprob_sums(model, batch, mean=loss_type == "ipo").detach(), pi)
    with pytest.raises(ValueError, match="reference"):
        get_objective("dpo").loss(model, batch, settings, None, 1.0, None)


def test_sft_objective_is_the_masked_token_mean_nll(models):
    model, _ = models
    ts = [Trajectory([4, 5], [6, 7, 8], [], loss_mask=[1, 0, 1]), Trajectory([9], [10], [])]
    batch = get_objective("sft").collate(ts, 0)
    loss, metrics = get_objective("sft").loss(model, batch, LossSettings(), None, 0.3, None)
    with torch.no_grad():
        lp = token_logprobs(model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits,
                            batch.input_ids)
    # trained targets: row 0 tokens 6 and 8 (columns 1, 3), row 1 token 10 (column 0): 3 tokens
    expected = -(lp[0, 1] + lp[0, 3] + lp[1, 0]) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert metrics["sft/nll"] == pytest.approx(expected.item(), rel=1e-6)
    # with a global normaliser of 6 tokens the same sum is divided by 6
    half, _ = get_objective("sft").loss(model, batch, LossSettings(), 6.0, 1.0, None)
    assert half.item() == pytest.approx(expected.item() / 2, rel=1e-6)


def test_metric_accumulator_and_merge_by_hand():
    # rank 0, one mini-batch of two micro steps: loss (normalised) 0.2 and 0.4; kl 1.0 over 3 tokens and
    # 4.0 over 1 token; ratio_max 1.1 and 1.3
    r0 = MetricAccumulator(("loss",))
    r0.add({"loss": 0.2, "kl": 1.0, "ratio_max": 1.1}, 3)
    r0.add({"loss": 0.4, "kl": 4.0, "ratio_max": 1.3}, 1)
    r0.end_minibatch()
    r0.add_value("grad_norm", 2.0)
    # rank 1: one real micro step and one padding step (weight 0: its kl and ratio_max do not count,
    # its loss 0 does, as DeepSpeed averages it in)
    r1 = MetricAccumulator(("loss",))
    r1.add({"loss": 0.6, "kl": 2.0, "ratio_max": 1.2}, 4)
    r1.add({"loss": 0.0, "kl": 0.0, "ratio_max": 0.0}, 0)
    r1.end_minibatch()
    r1.add_value("grad_norm", 2.0)
    out = merge_rank_metrics([r0.result(), r1.result()])
    # loss: rank means (0.2 + 0.4) / 2 = 0.3 and (0.6 + 0) / 2 = 0.3 -> 0.3, which is (0.2 + 0.4 + 0.6 + 0) / 4
    assert out["loss"] == pytest.approx(0.3)
    # kl weighted by tokens: (1 * 3 + 4 * 1 + 2 * 4) / 8 = 15 / 8
    assert out["kl"] == pytest.approx(15 / 8)
    assert out["ratio_max"] == pytest.approx(1.3) and out["grad_norm"] == pytest.approx(2.0)


def test_normalised_loss_is_averaged_per_minibatch():
    # two mini-batches of 1 and 3 micro steps: the step's loss is the mean of the mini-batch losses
    acc = MetricAccumulator(("loss",))
    acc.add({"loss": 0.9}, 1)
    acc.end_minibatch()
    for v in (0.1, 0.2, 0.3):
        acc.add({"loss": v}, 1)
    acc.end_minibatch()
    assert merge_rank_metrics([acc.result()])["loss"] == pytest.approx((0.9 + 0.2) / 2)
