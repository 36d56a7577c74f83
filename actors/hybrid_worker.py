"""HybridWorker: learner rank 0 and the policy's rollout engine in one process (rollout.placement=learner).

A hybrid engine, as veRL's actor-rollout workers are: one process imports torch and transformers once and
holds both copies of the model, so a run starts one process fewer per policy. Nothing else changes: the
rollout pool talks to this actor as to a RolloutWorker (generate, update_weights, ready), the learner group as
to rank 0 (setup, train, weights), and weights still travel as versioned messages (rank 0 packs, the engine
loads, here inside one process). The actor runs one method at a time, so a generate call submitted before an
update runs before it, with the weights it was submitted against: overlapped steps keep their staleness.
"""
from __future__ import annotations

import ray

from actors.learner_worker import LearnerRank
from actors.rollout_worker import RolloutHost


@ray.remote
class HybridWorker(LearnerRank, RolloutHost):
    def __init__(self, rank: int, cfg, model_path: str, dtype: str, micro: int, use_reference: bool, share: int = 1,
                 rollout: dict | None = None):
        """`rollout`: RolloutHost's arguments (backend, dtype, max_model_len, ...); its torch threads are the
        learner's (the two halves take turns)."""
        LearnerRank.__init__(self, rank, cfg, model_path, dtype, micro, use_reference, share)
        RolloutHost.__init__(self, 0, model_path, **{**(rollout or {}), "threads": cfg.threads, "share": share})

    def join_sync_group(self, host: str, port: int, world_size: int, backend: str) -> None:
        raise RuntimeError("a hybrid worker's engine shares its learner's process: no broadcast group; "
                           "use rollout.weight_sync=object_store (or rollout.placement=workers)")
