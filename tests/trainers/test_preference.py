"""DPO losses: hand-worked numbers, and the same tensors through TRL's formulas.

TRL 1.16.0 computes its DPO loss inside `DPOTrainer._compute_loss` (trl/trainer/dpo_trainer.py), which needs
a model, a batch and an accelerator, so it cannot be called on bare tensors. `_trl_*` below copy its
expressions verbatim (line numbers of that file, f_divergence_type "reverse_kl", one loss type):
  1350-1351  chosen_logratios = chosen_logps - ref_chosen_logps; rejected_logratios likewise
  1354-1355, 1383  chosen_scores = chosen_logratios; rejected_scores = rejected_logratios; delta_score = their difference
  1388       sigmoid: per_sequence_loss = -F.logsigmoid(self.beta * delta_score)
  1400-1404  ipo: chosen_avg_score = chosen_scores / chosen_mask.sum(dim=1).clamp(min=1.0) (rejected likewise);
             ipo_delta = chosen_avg_score - rejected_avg_score; per_sequence_loss = (ipo_delta - 1 / (2 * self.beta)) ** 2
  1453-1456  label smoothing (the conservative form, as TRL writes it for `aot`):
             -F.logsigmoid(self.beta * delta) * (1 - self.label_smoothing) - F.logsigmoid(-self.beta * delta) * self.label_smoothing
  1527       loss += per_sequence_loss.mean() * loss_weight
  1582-1597  chosen_rewards = self.beta * chosen_logratios; rejected likewise; accuracies (chosen > rejected); margins
A test below checks that these lines still read so in the installed TRL.
"""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trainers.preference import dpo_loss, dpo_losses

# three pairs (policy chosen, rejected; reference chosen, rejected), beta 0.5:
#   A: pi_c - ref_c = -5 - -6 = +1, pi_r - ref_r = -9 - -8 = -1 -> h = +2, beta h = +1
#   B: pi_c - ref_c = -4 - -4 =  0, pi_r - ref_r = -3 - -5 = +2 -> h = -2, beta h = -1
#   C: all log-ratios 0                                        -> h =  0
PI_C, PI_R = torch.tensor([-5.0, -4.0, -2.0]), torch.tensor([-9.0, -3.0, -7.0])
REF_C, REF_R = torch.tensor([-6.0, -4.0, -2.0]), torch.tensor([-8.0, -5.0, -7.0])
LOG1P_EXP_M1 = math.log(1 + math.exp(-1))  # -logsigmoid(1)  = 0.31326168751822286
LOG1P_EXP_1 = math.log(1 + math.exp(1))  # -logsigmoid(-1) = 1.3132616875182228 (= LOG1P_EXP_M1 + 1)


def test_sigmoid_by_hand():
    loss, m = dpo_loss(PI_C, PI_R, REF_C, REF_R, beta=0.5)
    # per pair: -logsigmoid(1) = 0.313262, -logsigmoid(-1) = 1.313262, -logsigmoid(0) = ln 2 = 0.693147
    assert LOG1P_EXP_M1 == pytest.approx(0.31326168751822286) and LOG1P_EXP_1 == pytest.approx(1.3132616875182228)
    expected = (0.31326168751822286 + 1.3132616875182228 + 0.6931471805599453) / 3  # = 0.7732235185321321
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["loss"] == pytest.approx(0.7732235185321321, rel=1e-6)
    assert m["margin"] == pytest.approx(0.0, abs=1e-7)  # beta h = +1, -1, 0
    assert m["accuracy"] == pytest.approx(1 / 3)  # only A has h > 0 (h = 0 is not a win)
    assert m["chosen_reward"] == pytest.approx((0.5 + 0 + 0) / 3)  # beta (pi_c - ref_c)
    assert m["rejected_reward"] == pytest.approx((-0.5 + 1.0 + 0) / 3)  # beta (pi_r - ref_r)


def test_label_smoothing_by_hand():
    # ls = 0.25: A: 0.75 * 0.313262 + 0.25 * 1.313262 = 0.563262 ; B: 0.75 * 1.313262 + 0.25 * 0.313262 = 1.063262
    # C: ln 2 either way
    losses, _ = dpo_losses(PI_C, PI_R, REF_C, REF_R, beta=0.5, label_smoothing=0.25)
    torch.testing.assert_close(losses, torch.tensor([0.5632616875, 1.0632616875, 0.6931471806]))


def test_ipo_by_hand():
    # 1 / (2 beta) = 1: (2 - 1)^2 = 1, (-2 - 1)^2 = 9, (0 - 1)^2 = 1 -> mean 11 / 3
    loss, m = dpo_loss(PI_C, PI_R, REF_C, REF_R, beta=0.5, loss_type="ipo")
    assert loss.item() == pytest.approx(11 / 3, rel=1e-6)
    assert m["accuracy"] == pytest.approx(1 / 3)


def test_gradient_of_the_sigmoid_loss():
    # d/d pi_c of -logsigmoid(beta h) / N = -beta * sigmoid(-beta h) / N; A: -0.5 * sigmoid(-1) / 3
    pi_c = PI_C.clone().requires_grad_()
    loss, _ = dpo_loss(pi_c, PI_R, REF_C, REF_R, beta=0.5)
    loss.backward()
    sig = torch.sigmoid(torch.tensor([-1.0, 1.0, 0.0]))
    torch.testing.assert_close(pi_c.grad, -0.5 * sig / 3)


def test_unknown_loss_type_is_named():
    with pytest.raises(ValueError, match="'hinge'"):
        dpo_loss(PI_C, PI_R, REF_C, REF_R, loss_type="hinge")


# -- TRL's expressions (see the module docstring) --------------------------------------------------------
def _trl_sigmoid(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    delta_score = chosen_logratios - rejected_logratios
    per_sequence_loss = -F.logsigmoid(beta * delta_score)
    chosen_rewards, rejected_rewards = beta * chosen_logratios, beta * rejected_logratios
    return per_sequence_loss.mean(), {
        "rewards/chosen": chosen_rewards.mean().item(), "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item()}


def _trl_smoothed(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta, label_smoothing):
    delta = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    per_sequence_loss = (-F.logsigmoid(beta * delta) * (1 - label_smoothing)
                         - F.logsigmoid(-beta * delta) * label_smoothing)
    return per_sequence_loss.mean()


def _trl_ipo(chosen_token_logps, rejected_token_logps, ref_chosen_token_logps, ref_rejected_token_logps,
             chosen_mask, rejected_mask, beta):
    # TRL sums the per-token logps over the completion (logps = per_token_logps.sum(dim=1)) ...
    chosen_logps = (chosen_token_logps * chosen_mask).sum(1)
    rejected_logps = (rejected_token_logps * rejected_mask).sum(1)
    ref_chosen_logps = (ref_chosen_token_logps * chosen_mask).sum(1)
    ref_rejected_logps = (ref_rejected_token_logps * rejected_mask).sum(1)
    chosen_scores = chosen_logps - ref_chosen_logps
    rejected_scores = rejected_logps - ref_rejected_logps
    # ... and the ipo branch divides the scores by the completion lengths
    chosen_avg_score = chosen_scores / chosen_mask.sum(dim=1).clamp(min=1.0)
    rejected_avg_score = rejected_scores / rejected_mask.sum(dim=1).clamp(min=1.0)
    ipo_delta = chosen_avg_score - rejected_avg_score
    per_sequence_loss = (ipo_delta - 1 / (2 * beta)) ** 2
    return per_sequence_loss.mean()


def _random_logps(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [-torch.rand(n, generator=g) * 20 for _ in range(4)]


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_sigmoid_matches_trl(beta):
    logps = _random_logps(16, seed=int(beta * 10))
    ours, m = dpo_loss(*logps, beta=beta)
    theirs, tm = _trl_sigmoid(*logps, beta=beta)
    torch.testing.assert_close(ours, theirs)
    assert m["chosen_reward"] == pytest.approx(tm["rewards/chosen"], rel=1e-5)
    assert m["rejected_reward"] == pytest.approx(tm["rewards/rejected"], rel=1e-5)
    assert m["accuracy"] == pytest.approx(tm["rewards/accuracies"])
    assert m["margin"] == pytest.approx(tm["rewards/margins"], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("ls", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_trl(ls):
    logps = _random_logps(16, seed=7)
    ours, _ = dpo_loss(*logps, beta=0.2, label_smoothing=ls)
    torch.testing.assert_close(ours, _trl_smoothed(*logps, beta=0.2, label_smoothing=ls))


def test_ipo_on_token_means_matches_trl():
    """Our caller averages each response's logprobs over its tokens for ipo; TRL sums then divides the
    log-ratio scores by the lengths. The same numbers."""
    g = torch.Generator().manual_seed(3)
    token = [-torch.rand(6, 9, generator=g) * 4 for _ in range(4)]
    chosen_mask = (torch.rand(6, 9, generator=g) > 0.3).float()
    rejected_mask = (torch.rand(6, 9, generator=g) > 0.5).float()
    chosen_mask[:, 0] = rejected_mask[:, 0] = 1

    def mean(x, mask):
        return (x * mask).sum(1) / mask.sum(1)

    ours, _ = dpo_loss(mean(token[0], chosen_mask), mean(token[1], rejected_mask), mean(token[2], chosen_mask),
                       mean(token[3], rejected_mask), beta=0.25, loss_type="ipo")
    theirs = _trl_ipo(*token, chosen_mask, rejected_mask, beta=0.25)
    torch.testing.assert_close(ours, theirs)


def test_trl_source_still_has_these_expressions():
    trl = pytest.importorskip("trl")
    source = (Path(trl.__file__).parent / "trainer" / "dpo_trainer.py").read_text()
    for line in ["chosen_logratios = chosen_logps - ref_chosen_logps",
                 "per_sequence_loss = -F.logsigmoid(self.beta * delta_score)",
                 "chosen_avg_score = chosen_scores / chosen_mask.sum(dim=1).clamp(min=1.0)",
                 "per_sequence_loss = (ipo_delta - 1 / (2 * self.beta)) ** 2",
                 "-F.logsigmoid(self.beta * delta) * (1 - self.label_smoothing)",
                 "- F.logsigmoid(-self.beta * delta) * self.label_smoothing",
                 "chosen_rewards = self.beta * chosen_logratios.detach()",
                 "reward_accuracies = (chosen_rewards > rejected_rewards).float()"]:
        assert line in source, line
