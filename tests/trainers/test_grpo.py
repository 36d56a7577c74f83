"""Data-parallel exactness of the update plan, for every objective and any number of samples or pairs:
the per-rank, per-micro-batch losses and gradients, averaged the way DeepSpeed averages gradients (over
ranks and accumulation steps), equal the loss and gradient of the whole mini-batch on one process. Micro
batches are sorted by length and cut to their longest row, and the LM head runs only from the first scored
position, as in the learner."""
import math
import random

import pytest
import torch

from trainers.batch import Trajectory, collate
from trainers.grpo import micro_batch_loss
from trainers.losses import PolicyLossConfig
from trainers.models import load_causal_lm
from trainers.objectives import LossSettings, get_objective
from trainers.preference import PreferenceConfig
from trainers.update_plan import plan_updates


def trajectories(n: int, seed: int = 0, pairs: bool = False) -> list[Trajectory]:
    """n random samples; behaviour logprobs near the random tiny model's (about -ln 99), so some ratios are
    clipped and some not."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        resp = [rng.randrange(3, 90) for _ in range(rng.randrange(1, 9))]  # uneven lengths on purpose
        mask = [int(rng.random() > 0.2) for _ in resp] if i % 3 == 1 else None  # some tool-output tokens
        out.append(Trajectory(prompt_ids=[rng.randrange(3, 90) for _ in range(rng.randrange(2, 6))],
                              response_ids=resp, behaviour_logprobs=[-math.log(99) + rng.uniform(-0.2, 0.2) for _ in resp],
                              group_id=i // 4, advantage=rng.uniform(-1, 1), loss_mask=mask,
                              pair_id=i // 2 if pairs else None, chosen=(i % 2 == 1) if pairs else None))
    return out


@pytest.fixture(scope="module")
def models(tiny_model_path):
    """The policy, and a reference that differs from it (so DPO log-ratios are not all 0)."""
    model = load_causal_lm(tiny_model_path)
    ref = load_causal_lm(tiny_model_path).requires_grad_(False)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in ref.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model, ref


def _grads(model) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in model.parameters()])


def check_exact(models, ts, objective, settings, world, updates, micro, temperature=1.0):
    """Simulate `world` ranks: each micro loss with the plan's normaliser, backward of loss / (world * k) (DeepSpeed
    divides by its gradient accumulation k and averages over ranks); compare with one process on the mini-batch."""
    model, ref = models
    obj = get_objective(objective)
    batch = obj.collate(ts, pad_id=0)
    plans = plan_updates(batch, world, updates, micro, obj.count(settings))
    assert len(plans) == world
    minis = batch.split(min(updates, batch.units))
    assert all(len(p.minibatches) == len(minis) for p in plans)
    for u, mini in enumerate(minis):
        k = len(plans[0].minibatches[u])
        assert all(len(p.minibatches[u]) == k for p in plans)  # the same number of micro steps on every rank
        if micro:
            assert all(len(mb) <= max(micro, batch.unit) for p in plans for mb in p.minibatches[u])
        # the real rows of every rank's micro batches are exactly the mini-batch's rows, each once
        real = [tuple(row.tolist()) for p in plans for mb in p.minibatches[u]
                for row, v in zip(mb.input_ids, mb.valid_rows()) if v > 0]
        assert sorted(real) == sorted(tuple(row.tolist()) for row in mini.input_ids)
        model.zero_grad()
        combined = 0.0
        for p in plans:
            normalizer = max(p.global_counts[u], 1.0) / (world * k)
            for mb in p.minibatches[u]:
                assert mb.unit == batch.unit and len(mb) % batch.unit == 0
                mb = mb.trimmed()  # as the learner does: each micro batch cut to its own longest row
                loss, _ = obj.loss(model, mb, settings, normalizer, temperature, ref)
                (loss / (world * k)).backward()
                combined += loss.item() / (world * k)
        sharded = _grads(model)
        model.zero_grad()
        expected, _ = obj.loss(model, mini, settings, None, temperature, ref)
        expected.backward()
        assert combined == pytest.approx(expected.item(), rel=1e-5, abs=1e-7)
        # float32 sums in another order (micro batches per rank vs one batch): an element of 1e-4 can differ
        # by 1e-7; a wrong normalizer or a lost row is off by orders more
        torch.testing.assert_close(sharded, _grads(model), rtol=1e-4, atol=5e-7)
        assert _grads(model).abs().sum() > 0


# (samples, world, updates, max rows per micro batch): even counts as before, and uneven ones, including fewer
# samples than ranks (a rank with only padding) and more updates than samples
SHAPES = [(16, 2, 1, 0), (16, 2, 1, 4), (16, 2, 2, 2), (16, 1, 1, 4),
          (5, 2, 1, 0), (5, 2, 1, 2), (7, 2, 2, 2), (7, 3, 2, 0), (1, 2, 1, 0), (1, 2, 2, 1), (3, 4, 1, 1)]


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean", "seq_sum"])
@pytest.mark.parametrize("n,world,updates,micro", SHAPES)
def test_grpo_sharded_equals_global(models, aggregation, n, world, updates, micro):
    settings = LossSettings(policy=PolicyLossConfig(aggregation=aggregation, max_tokens=8))
    check_exact(models, trajectories(n, seed=n), "grpo", settings, world, updates, micro, temperature=0.7)


def test_grpo_with_kl_and_token_advantages_sharded_equals_global(models):
    ts = trajectories(7, seed=3)
    for i, t in enumerate(ts[::2]):
        t.token_advantages = [((-1) ** j) * (i + 1) * 0.3 for j in range(len(t.response_ids))]
    settings = LossSettings(policy=PolicyLossConfig(kl_coef=0.1))
    check_exact(models, ts, "grpo", settings, 2, 1, 2)


@pytest.mark.parametrize("loss_type,ls", [("sigmoid", 0.0), ("sigmoid", 0.2), ("ipo", 0.0)])
@pytest.mark.parametrize("pairs,world,updates,micro", [(4, 1, 1, 0), (4, 2, 1, 2), (3, 2, 1, 0), (3, 2, 1, 2),
                                                       (5, 2, 2, 3), (1, 2, 1, 0), (3, 4, 2, 1)])
def test_dpo_sharded_equals_global(models, loss_type, ls, pairs, world, updates, micro):
    settings = LossSettings(dpo=PreferenceConfig(beta=0.5, loss_type=loss_type, label_smoothing=ls))
    ts = trajectories(2 * pairs, seed=pairs, pairs=True)
    random.Random(0).shuffle(ts)  # collate puts each pair's chosen row first, wherever they were
    check_exact(models, ts, "dpo", settings, world, updates, micro)


@pytest.mark.parametrize("n,world,updates,micro", [(8, 2, 1, 0), (5, 2, 1, 2), (7, 2, 2, 2), (1, 2, 1, 0), (3, 1, 1, 1)])
def test_sft_sharded_equals_global(models, n, world, updates, micro):
    ts = trajectories(n, seed=10 + n)
    for t in ts:
        t.behaviour_logprobs = []  # unknown: sft does not use them
    check_exact(models, ts, "sft", LossSettings(), world, updates, micro)


@pytest.mark.parametrize("objective", ["grpo", "dpo", "sft"])
def test_padding_micro_batches_have_exactly_zero_loss_and_gradient(models, objective):
    model, ref = models
    obj = get_objective(objective)
    settings = LossSettings(policy=PolicyLossConfig(kl_coef=0.1))
    pad = obj.collate(trajectories(4, seed=5, pairs=objective == "dpo"), pad_id=0).padding(2)
    model.zero_grad()
    loss, metrics = obj.loss(model, pad, settings, 3.0, 1.0, ref)
    loss.backward()
    assert loss.item() == 0.0 and metrics["loss"] == 0.0 and not _grads(model).any()
    assert obj.metric_weight(pad) == 0.0


def test_plan_shapes_for_uneven_counts():
    batch = collate(trajectories(5), pad_id=0)
    # 5 samples on 2 ranks, at most 2 rows per micro batch: rank 0 holds 3 -> 2 micro batches (2 + 1),
    # rank 1 holds 2 -> also 2 micro batches (1 + 1)
    plans = plan_updates(batch, 2, 1, 2, "tokens")
    assert [[len(mb) for mb in p.minibatches[0]] for p in plans] == [[2, 1], [1, 1]]
    # 1 sample on 2 ranks: rank 1 runs one padding micro batch; the normaliser counts only the real row
    plans = plan_updates(collate(trajectories(1), pad_id=0), 2, 1, 0, "sequences")
    assert [p.minibatches[0][0].valid_rows().tolist() for p in plans] == [[1.0], [0.0]]
    assert plans[0].global_counts == [1.0] == plans[1].global_counts
    # 2 updates asked of 1 sample: one mini-batch
    assert len(plan_updates(collate(trajectories(1), pad_id=0), 2, 2, 0, "tokens")[0].minibatches) == 1
    with pytest.raises(ValueError, match="unknown count"):
        plan_updates(batch, 2, 1, 0, "rows")


def test_token_advantages_replace_the_scalar(models):
    """Per-token advantages equal to the scalar give the same loss; a sign flip on one token flips its term."""
    model, _ = models
    ts = trajectories(4, seed=2)
    cfg = PolicyLossConfig()
    base, _ = micro_batch_loss(model, collate(ts, 0), cfg, None, 1.0)
    for t in ts:
        t.token_advantages = [t.advantage] * len(t.response_ids)
    same, _ = micro_batch_loss(model, collate(ts, 0), cfg, None, 1.0)
    assert same.item() == pytest.approx(base.item(), rel=1e-6)


def test_token_advantages_by_hand():
    """ratio 1 (old = current logprobs), token_mean: loss = -sum(A_t) / tokens, d loss / d logprob_t = -A_t / tokens.
    Row 0 response tokens A = [1, -3] (target columns 1, 2); row 1 masks its 2nd token out."""
    from trainers.losses import policy_loss

    lp = torch.full((2, 3), -1.0, requires_grad=True)
    adv = torch.tensor([[0.0, 1.0, -3.0], [2.0, 5.0, 0.5]])
    mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    loss, _ = policy_loss(lp, lp.detach().clone(), adv, mask, PolicyLossConfig())
    # -(1 - 3 + 2 + 0.5) / 4 = -0.125
    assert loss.item() == pytest.approx(-0.125)
    loss.backward()
    torch.testing.assert_close(lp.grad, torch.tensor([[0.0, -0.25, 0.75], [-0.5, 0.0, -0.125]]))


def test_truncated_importance_sampling_weights_the_pg_term(tiny_model_path):
    """pi_old recomputed by the learner; the sampler thought each token 4x less likely, so the pg term
    is weighted by min(4, cap): doubled with cap 2, and the gap metric reports log 4."""
    from trainers.grpo import recompute_old_logprobs

    model = load_causal_lm(tiny_model_path)
    micro = collate([Trajectory(**{**t.__dict__, "loss_mask": None}) for t in trajectories(8)], pad_id=0)
    learner_old = recompute_old_logprobs(model, micro, 1.0)
    plain = PolicyLossConfig()
    micro.old_logprobs = learner_old.clone()  # sampler == learner
    base, _ = micro_batch_loss(model, micro, plain, None, 1.0)
    micro.old_logprobs = (learner_old - math.log(4.0)) * micro.loss_mask
    capped, metrics = micro_batch_loss(model, micro, PolicyLossConfig(tis_cap=2.0), None, 1.0, learner_old=learner_old)
    assert capped.item() == pytest.approx(2 * base.item(), rel=1e-5)
    assert metrics["logprob_gap/mean_abs"] == pytest.approx(math.log(4.0), rel=1e-5)
    uncapped, _ = micro_batch_loss(model, micro, PolicyLossConfig(tis_cap=10.0), None, 1.0, learner_old=learner_old)
    assert uncapped.item() == pytest.approx(4 * base.item(), rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logits_only_at_scored_columns_equal_the_full_computation(models, temperature):
    """Multi-turn rows (turns trained on, tool outputs between them not): the LM head runs at the scored columns
    alone, and the logprobs there and their gradient equal those from every position's logits."""
    from trainers.grpo import SPARSE_BELOW, first_scored_column, sequence_logprobs
    from trainers.logprobs import token_logprobs

    model, _ = models
    rng = random.Random(3)
    turns = []
    for i in range(3):  # turn, 12 tool-output tokens, turn: the tool output is a gap in every row's mask
        first, tool, last = ([rng.randrange(3, 90) for _ in range(n)] for n in (3 + i, 12, 2))
        turns.append(Trajectory(prompt_ids=[rng.randrange(3, 90) for _ in range(4)], response_ids=first + tool + last,
                                behaviour_logprobs=[-4.0] * 17 + [-4.0] * i, group_id=0, advantage=1.0,
                                loss_mask=[1] * len(first) + [0] * 12 + [1] * 2))
    batch = collate(turns, pad_id=0)
    cols = batch.loss_mask.any(0).nonzero().flatten()
    assert len(cols) < (batch.input_ids.shape[1] - 1 - first_scored_column(batch)) * SPARSE_BELOW  # the sparse path

    model.zero_grad()
    sparse = sequence_logprobs(model, batch, temperature)
    (sparse * batch.loss_mask).sum().backward()
    g_sparse = _grads(model).clone()
    model.zero_grad()
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    full = token_logprobs(logits, batch.input_ids, temperature)
    (full * batch.loss_mask).sum().backward()
    g_full = _grads(model).clone()
    model.zero_grad()
    mask = batch.loss_mask.bool()
    assert torch.allclose(sparse[mask], full[mask], atol=1e-5)
    assert (sparse[:, batch.loss_mask.sum(0) == 0] == 0).all()  # columns no row scores: 0
    assert torch.allclose(g_sparse, g_full, atol=1e-5, rtol=1e-4)
