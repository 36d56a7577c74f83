"""One GRPO update on a model, in plain torch (the learner actor wraps it with DeepSpeed).

Data-parallel exactness: each rank holds a shard of every mini-batch. The
loss of a micro batch is divided by `normalizer = global_count / (world * gas)`
so that after DeepSpeed averages gradients over ranks and over accumulation
steps, the gradient equals that of the global token (or sequence) mean.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from trainers.batch import Batch
from trainers.logprobs import token_logprobs
from trainers.losses import PolicyLossConfig, policy_loss


@dataclass
class UpdatePlan:
    """What one rank does in one driver step: mini-batches, each split into micro batches."""
    minibatches: list[list[Batch]]
    global_counts: list[float]  # per mini-batch: tokens (token_mean) or sequences (seq_*) over all ranks


def count_for(batch: Batch, aggregation: str) -> float:
    if aggregation == "token_mean":
        return float(batch.loss_mask.sum())
    return float(len(batch))


def plan_updates(batch: Batch, world_size: int, updates: int, micro_batch_size: int,
                 aggregation: str) -> list[UpdatePlan]:
    """Split a step's batch into per-rank plans with global normalisers."""
    shards = [batch.shard(r, world_size) for r in range(world_size)]
    per_rank = [[s.shard(u, updates) for u in range(updates)] for s in shards]
    global_counts = [sum(count_for(per_rank[r][u], aggregation) for r in range(world_size)) for u in range(updates)]
    plans = []
    for r in range(world_size):
        minis = []
        for mb in per_rank[r]:
            size = micro_batch_size or max(len(mb), 1)
            minis.append(mb.micro_batches(size))
        plans.append(UpdatePlan(minis, global_counts))
    return plans


def sequence_logprobs(model, batch: Batch, temperature: float) -> torch.Tensor:
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    return token_logprobs(out.logits, batch.input_ids, temperature)


@torch.no_grad()
def recompute_old_logprobs(model, micro: Batch, temperature: float) -> torch.Tensor:
    """The learner's own logprobs of the sampled tokens before the update (pi_old for truncated IS)."""
    return sequence_logprobs(model, micro, temperature)


def logprob_gap(logprobs: torch.Tensor, behaviour: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Behaviour/learner mismatch on the trained tokens: mean and max |learner - sampler| logprob."""
    diff = (logprobs.detach() - behaviour).abs() * mask
    n = float(mask.sum())
    return {"logprob_gap/mean_abs": float(diff.sum()) / max(n, 1.0), "logprob_gap/max_abs": float(diff.max()) if n else 0.0}


def micro_batch_loss(model, micro: Batch, cfg: PolicyLossConfig, normalizer: float, temperature: float,
                     ref_model=None, learner_old: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one micro batch. With `learner_old` (recomputed pi_old), the batch's behaviour logprobs
    only enter through the truncated-IS weight; without it they are pi_old themselves."""
    logprobs = sequence_logprobs(model, micro, temperature)
    ref = None
    if ref_model is not None and cfg.kl_coef > 0:
        with torch.no_grad():
            ref = sequence_logprobs(ref_model, micro, temperature)
    old, behaviour = (micro.old_logprobs, None) if learner_old is None else (learner_old, micro.old_logprobs)
    loss, metrics = policy_loss(logprobs, old, micro.advantages, micro.loss_mask, cfg,
                                ref_logprobs=ref, behaviour_logprobs=behaviour, normalizer=normalizer)
    metrics.update(logprob_gap(logprobs if learner_old is None else learner_old, micro.old_logprobs, micro.loss_mask))
    return loss, metrics
