"""The DeepSpeed learner group: N LearnerWorker ranks driven together."""
from __future__ import annotations

import os
import tempfile
from dataclasses import replace

import ray

from actors.hybrid_worker import HybridWorker
from actors.learner_worker import LearnerWorker
from cluster.runtime.placement import bundle, compute_share, on_bundle, reserve
from trainers.batch import Trajectory, collate
from trainers.losses import PolicyLossConfig
from trainers.objectives import LossSettings, Objective, get_objective, merge_rank_metrics
from trainers.preference import PreferenceConfig
from trainers.update_plan import count_for, plan_updates


class LearnerGroup:
    """One policy's learner ranks.

    cfg: the run config (cfg.algorithm: loss settings; cfg.rollout.sampling.max_new_tokens: seq_sum's divisor);
    learner: this policy's LearnerConfig (default cfg.learner); dtype: default cfg.model.dtype; name: the
    placement group's role name, so that several policies' groups coexist.
    """

    def __init__(self, cfg, model_path: str, strategy: str, *, learner=None, dtype=None, name: str = "learner",
                 start: bool = True, host_rollout: dict | None = None):
        """start=False: the ranks' actors are created (they load meanwhile) and start() joins them into the
        process group later (a caller starting other actors meanwhile). host_rollout: rank 0 is a HybridWorker
        that also hosts the policy's rollout engine (RolloutHost's arguments; `hybrid` is then that actor)."""
        lc = learner if learner is not None else cfg.learner
        self.algo = cfg.algorithm
        self.world_size = lc.world_size
        self.micro = lc.micro_batch_size  # max rows per micro batch; 0 = a rank's whole shard in one
        self.pg = reserve(name, [bundle(lc.cpus_per_rank, lc.gpus_per_rank)] * lc.world_size, strategy)
        args = (lc, model_path, dtype or cfg.model.dtype, lc.micro_batch_size or 1, self.algo.kl_coef > 0)
        share = compute_share(cfg, "learner")
        self.ranks = [
            HybridWorker.options(**on_bundle(self.pg, r)).remote(r, *args, share=share, rollout=host_rollout)
            if r == 0 and host_rollout is not None else
            LearnerWorker.options(**on_bundle(self.pg, r)).remote(r, *args, share=share)
            for r in range(lc.world_size)
        ]
        self.hybrid = self.ranks[0] if host_rollout is not None else None
        self.info: list[dict] | None = None
        self._joining: list | None = None  # the ranks' setup calls, submitted by begin(), joined by start()
        self._rendezvous: tempfile.TemporaryDirectory | None = None
        self.settings = LossSettings(
            policy=PolicyLossConfig(clip_low=self.algo.clip_low, clip_high=self.algo.clip_high,
                                    aggregation=self.algo.aggregation, kl_coef=self.algo.kl_coef,
                                    kl_estimator=self.algo.kl_estimator, tis_cap=self.algo.tis_cap,
                                    max_tokens=cfg.rollout.sampling.max_new_tokens),
            dpo=PreferenceConfig(beta=self.algo.dpo.beta, loss_type=self.algo.dpo.loss_type,
                                 label_smoothing=self.algo.dpo.label_smoothing))
        if start:
            self.start()

    def begin(self) -> None:
        """Submit every rank's setup (model, DeepSpeed engine, process group) without waiting: the ranks set
        up while the caller starts other actors, e.g. another policy's learners (start() joins them)."""
        if self.info is not None or self._joining is not None:
            return
        if len(self._nodes()) == 1:
            # one node: rendezvous through a file, so no TCP listener is opened
            self._rendezvous = tempfile.TemporaryDirectory(prefix="evoforge-rdzv-", dir=os.environ.get("RAY_TMPDIR"))
            init_method = f"file://{os.path.join(self._rendezvous.name, 'init')}"
        else:  # ranks on several nodes: TCP store on rank 0's node
            host, port = ray.get(self.ranks[0].free_port.remote())
            init_method = f"tcp://{host}:{port}"
        self._joining = [w.setup.remote(init_method) for w in self.ranks]  # every rank joins at once

    def start(self) -> None:
        """Every rank joins the process group (once)."""
        self.begin()
        if self.info is not None:
            return
        try:
            self.info = ray.get(self._joining)
        finally:
            self._joining = None
            if self._rendezvous is not None:
                self._rendezvous.cleanup()
                self._rendezvous = None

    def _nodes(self) -> set:
        """The nodes the ranks' bundles were placed on (known once the placement group is ready)."""
        placed = ray.util.placement_group_table(self.pg).get("bundles_to_node_id") or {}
        if len(placed) == len(self.ranks):
            return set(placed.values())
        return set(ray.get([w.node_address.remote() for w in self.ranks]))

    def update(self, trajectories: list[Trajectory], objective: str, temperature: float, pad_id: int,
               recompute_old: bool = False, is_cap: float | None = None) -> dict:
        """One step on every rank with the named objective (grpo, dpo or sft) over any number of trajectories
        (dpo: pairs, by pair_id/chosen). temperature: grpo scores at it (the sampling temperature); dpo and
        sft score at 1. recompute_old (grpo): pi_old is the learner's own logprobs (not the sampler's),
        needed when samples were not drawn from the policy itself (CUTS) or for truncated IS.
        Returns the metrics averaged over ranks (grpo: loss, pg_loss, kl, clip_frac, ratio_mean, ratio_max,
        logprob_gap/*; dpo: loss, dpo/*; sft: loss, sft/nll; every objective: grad_norm, lr, seconds).
        is_cap (grpo, with recompute_old): this update's truncated-IS cap, for stale samples."""
        obj = get_objective(objective)
        settings = self.settings
        if is_cap is not None:
            settings = replace(settings, policy=replace(settings.policy, tis_cap=is_cap))
        obj.check(settings)
        count = obj.count(self.settings)
        trajectories, extra, dropped = self._drop_zero_advantage(trajectories, obj, count, pad_id)
        batch = obj.collate(trajectories, pad_id)
        plans = plan_updates(batch, self.world_size, self.algo.updates_per_step, self.micro, count, extra)
        results = ray.get([w.train.remote(p, objective, settings, temperature, recompute_old)
                           for w, p in zip(self.ranks, plans)])
        return {**merge_rank_metrics(results), **dropped}

    def _drop_zero_advantage(self, trajectories: list[Trajectory], obj: Objective, count: str, pad_id: int):
        """DAPO's dynamic sampling without changing the gradient: under an objective whose zero-advantage rows
        carry no signal (grpo), a row whose advantage is 0 everywhere (every row of a group whose samples scored
        alike) has a loss and gradient of exactly 0 when there is no KL term, so it is left out of the
        forward/backward while the normaliser still counts it.
        Returns (kept rows, their count in normaliser units, metrics)."""
        algo = self.algo
        if (not obj.zero_advantage_is_no_signal or not algo.drop_flat_groups or algo.kl_coef != 0
                or algo.updates_per_step != 1):
            return trajectories, 0.0, {}
        kept = [t for t in trajectories if t.has_signal()]
        dropped = [t for t in trajectories if not t.has_signal()]
        if not kept:  # no row has a signal: nothing to save (the policy skips such steps unless told not to)
            kept, dropped = trajectories, []
        groups = {(t.role, t.group_id) for t in dropped} - {(t.role, t.group_id) for t in kept}
        extra = count_for(collate(dropped, pad_id), count) if dropped else 0.0
        return kept, extra, {"update/dropped_samples": float(len(dropped)), "update/flat_groups": float(len(groups))}

    def sequence_logprobs(self, trajectories: list[Trajectory], pad_id: int, reference: bool = False) -> list[float]:
        """Each trajectory's summed loss-masked response logprob (temperature 1) under the current policy, or
        the frozen reference (the run's initial weights); no optimizer step. In trajectory order."""
        if not trajectories:
            return []
        batch = collate(trajectories, pad_id, require_behaviour=False)
        plans = plan_updates(batch, self.world_size, 1, self.micro, "sequences")
        results = ray.get([w.sequence_logprobs.remote(p, reference) for w, p in zip(self.ranks, plans)])
        out = [x for r in results for x in r]
        assert len(out) == len(trajectories)
        return out

    def weights_ref(self, version: int, adapter_only: bool = False):
        """ObjectRef of rank 0's (manifest, buffer); every rank takes part (ZeRO-3 gathers)."""
        refs = [w.weights.remote(version, adapter_only) for w in self.ranks]
        ray.get(refs[1:])
        return refs[0]

    # -- broadcast weight sync: rank 0 hosts a group with the rollout engines ------
    def sync_manifest(self, adapter_only: bool):
        return ray.get([w.sync_manifest.remote(adapter_only) for w in self.ranks])[0]

    def free_port(self) -> tuple[str, int]:
        return ray.get(self.ranks[0].free_port.remote())

    def join_sync_group(self, host: str, port: int, world_size: int, backend: str) -> None:
        ray.get(self.ranks[0].join_sync_group.remote(host, port, world_size, backend))

    def broadcast_weights(self, version: int, adapter_only: bool) -> int:
        return ray.get([w.broadcast_weights.remote(version, adapter_only) for w in self.ranks])[0]

    def save(self, folder: str, tag: str, hf_folder: str, tokenizer_path: str) -> None:
        ray.get([w.save_checkpoint.remote(folder, tag, hf_folder if i == 0 else None, tokenizer_path)
                 for i, w in enumerate(self.ranks)])

    def load(self, folder: str, tag: str) -> None:
        ray.get([w.load_checkpoint.remote(folder, tag) for w in self.ranks])

