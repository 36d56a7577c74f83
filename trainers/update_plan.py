"""The update plan every objective shares: how a step's rows become mini-batches (one optimizer step each) of
micro batches on every rank, with each mini-batch's global normaliser count.

Data-parallel exactness: each rank holds a shard of every mini-batch. The loss of a micro batch is divided
by `normalizer = global_count / (world * k)` (k micro batches per rank in that mini-batch) so that after
DeepSpeed averages gradients over ranks and over accumulation steps, the gradient equals that of the global
token (or sequence, or pair) mean. Any number of units works: every rank runs the same k micro steps, the
ones short of units run padding micro batches (a copy of a real unit whose loss is exactly 0), because ZeRO
reduces gradients at every backward and all ranks must take part in each.
"""
from __future__ import annotations

from dataclasses import dataclass

from trainers.batch import Batch

# what an objective's normaliser counts; the policy-loss aggregation names map onto them
COUNTS = {"tokens": "tokens", "sequences": "sequences", "pairs": "pairs",
          "token_mean": "tokens", "seq_mean": "sequences", "seq_sum": "sequences"}


@dataclass
class UpdatePlan:
    """What one rank does in one driver step: mini-batches, each split into micro batches (the same number
    of micro batches on every rank, padding included)."""
    minibatches: list[list[Batch]]
    global_counts: list[float]  # per mini-batch: tokens, sequences or pairs over all ranks (padding excluded)


def count_for(batch: Batch, count: str) -> float:
    """Normaliser units in `batch`, padding rows excluded: tokens (loss-mask sum), sequences or pairs.
    `count` may also be a policy-loss aggregation: token_mean counts tokens, seq_mean/seq_sum sequences."""
    kind = COUNTS.get(count)
    if kind is None:
        raise ValueError(f"unknown count {count!r}: use tokens, sequences or pairs")
    if kind == "tokens":
        return float(batch.loss_mask.sum())
    rows = float(batch.valid_rows().sum())
    return rows / 2 if kind == "pairs" else rows


def _micro_split(shard: Batch, k: int, pad: Batch) -> list[Batch]:
    """Exactly k micro batches of `shard`'s units (near-equal); padding where it has fewer than k. With several
    micro batches the units go longest first, so that each micro batch holds rows of similar length and the
    learner, which cuts each micro batch to its own longest row, computes little padding."""
    if shard.units >= k:
        return (shard.by_length() if k > 1 else shard).split(k)
    return [shard._units(i, i + 1) for i in range(shard.units)] + [pad] * (k - shard.units)


def plan_updates(batch: Batch, world_size: int, updates: int, micro_batch_size: int, count: str,
                 extra_count: float = 0.0) -> list[UpdatePlan]:
    """Split a step's batch into per-rank plans with global normalisers.

    The batch is cut into min(updates, units) mini-batches of contiguous units (one optimizer step each), each
    mini-batch sharded over the ranks by contiguous units. Every rank gets k = max over ranks of
    ceil(units / max rows per micro) micro batches (micro_batch_size 0: one micro batch of the whole shard);
    a rank with fewer units than k pads with zero-loss copies of the batch's first unit.
    `extra_count` (one mini-batch only): units left out of `batch` that the normaliser still counts (rows
    whose loss is exactly 0, dropped to save their compute), so the gradient is the one of the full batch.
    """
    if extra_count and updates != 1:
        raise ValueError("extra_count needs a single mini-batch (updates=1)")
    if world_size < 1 or updates < 1 or micro_batch_size < 0:
        raise ValueError(f"world_size={world_size}, updates={updates}, micro_batch_size={micro_batch_size}")
    if batch.units == 0:
        raise ValueError("cannot plan an update of an empty batch")
    pad = batch.padding(1)
    per_micro = max(micro_batch_size // batch.unit, 1) if micro_batch_size else None
    minis_by_rank: list[list[list[Batch]]] = [[] for _ in range(world_size)]
    global_counts = []
    for mini in batch.split(min(updates, batch.units)):
        shards = mini.split(world_size)
        most = max(s.units for s in shards)
        k = 1 if per_micro is None else -(-most // per_micro)
        global_counts.append(sum(count_for(s, count) for s in shards) + extra_count)
        for r, s in enumerate(shards):
            minis_by_rank[r].append(_micro_split(s, k, pad))
    return [UpdatePlan(minis, list(global_counts)) for minis in minis_by_rank]
