"""Data-parallel exactness of the update plan: the per-rank, per-micro-batch losses, averaged the way
DeepSpeed averages gradients (over ranks and accumulation steps), equal the loss of the whole mini-batch."""
import random

import pytest

from trainers.batch import Trajectory, collate
from trainers.grpo import micro_batch_loss, plan_updates
from trainers.losses import PolicyLossConfig
from trainers.models import load_causal_lm


def trajectories(n: int, seed: int = 0) -> list[Trajectory]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        resp = [rng.randrange(3, 90) for _ in range(rng.randrange(1, 9))]  # uneven lengths on purpose
        out.append(Trajectory(prompt_ids=[rng.randrange(3, 90) for _ in range(rng.randrange(2, 6))],
                              response_ids=resp, behaviour_logprobs=[-rng.random() * 3 for _ in resp],
                              group_id=i // 4, advantage=rng.uniform(-1, 1)))
    return out


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean", "seq_sum"])
@pytest.mark.parametrize("world,updates,micro", [(2, 1, 0), (2, 1, 4), (2, 2, 2), (1, 1, 4)])
def test_sharded_losses_average_to_the_global_loss(tiny_model_path, aggregation, world, updates, micro):
    model = load_causal_lm(tiny_model_path)
    batch = collate(trajectories(16), pad_id=0)
    cfg = PolicyLossConfig(aggregation=aggregation, max_tokens=8)
    plans = plan_updates(batch, world, updates, micro, aggregation)
    assert len(plans) == world
    for u in range(updates):
        # the mini-batch u of every rank, put together, is what a single process would train on
        rows = [plans[r].minibatches[u] for r in range(world)]
        gas = len(rows[0])
        combined = 0.0
        for r in range(world):
            assert len(rows[r]) == gas  # DeepSpeed needs the same accumulation count on every rank
            for mb in rows[r]:
                normalizer = plans[r].global_counts[u] / (world * gas)
                loss, _ = micro_batch_loss(model, mb, cfg, normalizer, temperature=1.0)
                combined += loss.item() / (world * gas)  # DeepSpeed: mean over ranks, loss / gas
        # the same rows as one global mini-batch (rank r holds rows r*size.., mini-batch u a slice of them)
        size = 16 // world
        idx = [r * size + i for r in range(world) for i in range(u * size // updates, (u + 1) * size // updates)]
        assert sum(len(mb) for r in range(world) for mb in rows[r]) == len(idx)
        global_mb = collate([trajectories(16)[i] for i in idx], pad_id=0)
        expected, _ = micro_batch_loss(model, global_mb, cfg, None, temperature=1.0)
        assert combined == pytest.approx(expected.item(), rel=1e-5, abs=1e-7)


def test_truncated_importance_sampling_weights_the_pg_term(tiny_model_path):
    """pi_old recomputed by the learner; the sampler thought each token 4x less likely, so the pg term
    is weighted by min(4, cap): doubled with cap 2, and the gap metric reports log 4."""
    import math

    from trainers.grpo import recompute_old_logprobs

    model = load_causal_lm(tiny_model_path)
    micro = collate(trajectories(8), pad_id=0)
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
