import math

import pytest
import torch

from trainers.losses import PolicyLossConfig, policy_loss

LN = math.log


def test_asymmetric_clipping_side_and_gradient():
    # clip range [1 - 0.1, 1 + 0.3] = [0.9, 1.3]; old = 0 so logprobs = ln(ratio); pg = max(-A r, -A clamp(r))
    # row 0, A = +1: r = 1.2 inside (would be clipped if the bounds were swapped) -> -1.2
    #                r = 1.5 > 1.3 -> clipped, -1.3, grad 0
    #                r = 0.5 < 0.9 but A > 0 -> not clipped: max(-0.5, -0.9) = -0.5
    # row 1, A = -1: r = 0.8 < 0.9 -> clipped: max(0.8, 0.9) = 0.9, grad 0
    #                r = 1.5 > 1.3 but A < 0 -> not clipped: max(1.5, 1.3) = 1.5
    #                r = 0.5 -> clipped: max(0.5, 0.9) = 0.9, grad 0
    # token_mean = (-1.2 - 1.3 - 0.5 + 0.9 + 1.5 + 0.9) / 6 = 0.3 / 6 = 0.05
    lp = torch.tensor([[LN(1.2), LN(1.5), LN(0.5)], [LN(0.8), LN(1.5), LN(0.5)]], requires_grad=True)
    cfg = PolicyLossConfig(clip_low=0.1, clip_high=0.3)
    loss, m = policy_loss(lp, torch.zeros(2, 3), torch.tensor([1.0, -1.0]), torch.ones(2, 3), cfg)
    assert loss.item() == pytest.approx(0.05, abs=1e-6)
    loss.backward()
    # unclipped d pg / d lp = -A * r, divided by 6 tokens: -1.2/6, -0.5/6 in row 0; 1.5/6 in row 1
    torch.testing.assert_close(lp.grad, torch.tensor([[-0.2, 0.0, -0.5 / 6], [0.0, 0.25, 0.0]]))
    assert m["clip_frac"] == pytest.approx(0.5)  # 3 of 6 tokens
    assert m["ratio_mean"] == pytest.approx(1.0)  # (1.2 + 1.5 + 0.5 + 0.8 + 1.5 + 0.5) / 6
    assert m["ratio_max"] == pytest.approx(1.5)
    assert m["kl"] == 0.0 and m["pg_loss"] == pytest.approx(0.05, abs=1e-6)


def _two_lengths():
    # ratio 1 everywhere, so pg = -A per token. row 0: 1 token, A = 2 -> -2 ; row 1: 3 tokens, A = -1 -> +1 each
    lp = torch.full((2, 3), -0.7, requires_grad=True)
    return lp, lp.detach().clone(), torch.tensor([2.0, -1.0]), torch.tensor([[1.0, 0, 0], [1, 1, 1]])


@pytest.mark.parametrize(
    "agg, normalizer, expected",
    [
        ("token_mean", None, 0.25),  # (-2 + 3) / 4 tokens
        ("seq_mean", None, -0.5),  # (-2/1 + 3/3) / 2 sequences
        ("seq_sum", None, 0.125),  # (-2 + 3) / (max_tokens 4 * 2 sequences)
        ("token_mean", 10.0, 0.1),  # 1 / 10
        ("seq_mean", 10.0, -0.1),  # (-2 + 1) / 10
        ("seq_sum", 10.0, 0.025),  # 1 / (4 * 10)
    ],
)
def test_aggregations(agg, normalizer, expected):
    lp, old, adv, mask = _two_lengths()
    cfg = PolicyLossConfig(aggregation=agg, max_tokens=4)
    loss, _ = policy_loss(lp, old, adv, mask, cfg, normalizer=normalizer)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_global_normalizer_makes_shards_add_up():
    # token_mean over the full batch is 0.25; shard losses with the global count 4: -2/4 + 3/4 = 0.25
    lp, old, adv, mask = _two_lengths()
    cfg = PolicyLossConfig()
    parts = [policy_loss(lp[i : i + 1], old[i : i + 1], adv[i : i + 1], mask[i : i + 1], cfg, normalizer=4)[0] for i in (0, 1)]
    assert [p.item() for p in parts] == pytest.approx([-0.5, 0.75])


def test_seq_sum_needs_max_tokens():
    lp, old, adv, mask = _two_lengths()
    with pytest.raises(ValueError):
        policy_loss(lp, old, adv, mask, PolicyLossConfig(aggregation="seq_sum"))


@pytest.mark.parametrize(
    "estimator, kl_token0",
    [
        ("k3", 0.1931472),  # d = ref - lp = ln 0.5: exp(d) - d - 1 = 0.5 + 0.6931472 - 1
        ("k1", 0.6931472),  # -d
        ("k2", 0.2402265),  # 0.5 * d^2 = 0.5 * 0.480453
    ],
)
def test_kl_estimators_and_gradient_only_to_logprobs(estimator, kl_token0):
    # token 0: policy 0.5, ref 0.25 ; token 1: policy == ref -> 0 ; A = 0 so pg = 0
    lp = torch.tensor([[LN(0.5), LN(0.3)]], requires_grad=True)
    old = lp.detach().clone().requires_grad_(True)
    ref = torch.tensor([[LN(0.25), LN(0.3)]], requires_grad=True)
    adv = torch.zeros(1, requires_grad=True)
    cfg = PolicyLossConfig(kl_coef=0.5, kl_estimator=estimator)
    loss, m = policy_loss(lp, old, adv, torch.ones(1, 2), cfg, ref_logprobs=ref)
    assert m["kl"] == pytest.approx(kl_token0 / 2, abs=1e-6)  # masked mean over 2 tokens
    assert loss.item() == pytest.approx(0.5 * kl_token0 / 2, abs=1e-6)
    loss.backward()
    assert lp.grad is not None and lp.grad[0, 0] != 0
    assert old.grad is None and ref.grad is None and adv.grad is None


def test_kl_coef_without_ref_raises():
    lp, old, adv, mask = _two_lengths()
    with pytest.raises(ValueError):
        policy_loss(lp, old, adv, mask, PolicyLossConfig(kl_coef=0.1))


@pytest.mark.parametrize("agg, expected", [("token_mean", -1.0), ("seq_mean", -0.5), ("seq_sum", -0.5)])
def test_all_masked_row_no_nan(agg, expected):
    # row 1 is padding with a huge log-ratio (0 - (-100)) that would overflow exp() if not masked first.
    # row 0: 2 tokens, A = 1, ratio 1 -> -1 each: token_mean -2/2, seq_mean (-1 + 0)/2, seq_sum -2/(2*2)
    lp = torch.tensor([[-1.0, -1.0], [0.0, 0.0]], requires_grad=True)
    old = torch.tensor([[-1.0, -1.0], [-100.0, -100.0]])
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    cfg = PolicyLossConfig(aggregation=agg, max_tokens=2, kl_coef=0.1)
    loss, m = policy_loss(lp, old, torch.tensor([1.0, 5.0]), mask, cfg, ref_logprobs=torch.full((2, 2), -1.0))
    loss.backward()
    assert loss.item() == pytest.approx(expected)
    assert torch.isfinite(lp.grad).all() and torch.equal(lp.grad[1], torch.zeros(2))
    assert all(math.isfinite(v) for v in m.values())
    # a batch with no trained token at all gives 0, not 0/0
    empty, _ = policy_loss(lp, old, torch.ones(2), torch.zeros(2, 2), cfg, ref_logprobs=torch.zeros(2, 2))
    assert empty.item() == 0.0


def test_truncated_importance_sampling():
    # old - behaviour = ln 0.25 -> weight 0.25 ; ln 3 -> 3 capped at 2. A = 1, ratio 1 -> pg -1 per token
    # token_mean = (-0.25 - 2) / 2 = -1.125
    lp = torch.zeros(1, 2, requires_grad=True)
    behaviour = torch.tensor([[-LN(0.25), -LN(3.0)]])
    cfg = PolicyLossConfig(tis_cap=2.0)
    loss, m = policy_loss(lp, torch.zeros(1, 2), torch.ones(1), torch.ones(1, 2), cfg, behaviour_logprobs=behaviour)
    assert loss.item() == pytest.approx(-1.125)
    assert m["tis_weight_mean"] == pytest.approx(1.125)
