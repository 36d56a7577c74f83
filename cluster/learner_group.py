"""The DeepSpeed learner group: N LearnerWorker ranks driven together."""
from __future__ import annotations

import os
import tempfile

import ray

from actors.learner_worker import LearnerWorker
from cluster.placement import bundle, on_bundle, reserve
from trainers.batch import Batch
from trainers.grpo import plan_updates
from trainers.losses import PolicyLossConfig


class LearnerGroup:
    def __init__(self, cfg, model_path: str, samples_per_step: int, strategy: str):
        lc, self.algo = cfg.learner, cfg.algorithm
        local = samples_per_step // (lc.world_size * self.algo.updates_per_step)
        self.micro = lc.micro_batch_size or local
        gas = max(local // self.micro, 1)
        self.pg = reserve("learner", [bundle(lc.cpus_per_rank, lc.gpus_per_rank)] * lc.world_size, strategy)
        self.world_size = lc.world_size
        self.ranks = [
            LearnerWorker.options(**on_bundle(self.pg, r)).remote(
                r, lc, model_path, cfg.model.dtype, self.micro, gas, self.algo.kl_coef > 0)
            for r in range(lc.world_size)
        ]
        nodes = set(ray.get([w.node_address.remote() for w in self.ranks]))
        if len(nodes) == 1:
            # one node: rendezvous through a file, so no TCP listener is opened
            with tempfile.TemporaryDirectory(prefix="evoforge-rdzv-", dir=os.environ.get("RAY_TMPDIR")) as tmp:
                self.info = self._setup(f"file://{os.path.join(tmp, 'init')}")
        else:  # ranks on several nodes: TCP store on rank 0's node
            host, port = ray.get(self.ranks[0].free_port.remote())
            self.info = self._setup(f"tcp://{host}:{port}")
        self.loss_cfg = PolicyLossConfig(clip_low=self.algo.clip_low, clip_high=self.algo.clip_high,
                                         aggregation=self.algo.aggregation, kl_coef=self.algo.kl_coef,
                                         kl_estimator=self.algo.kl_estimator, tis_cap=self.algo.tis_cap,
                                         max_tokens=cfg.rollout.sampling.max_new_tokens)

    def _setup(self, init_method: str) -> list[dict]:
        return ray.get([w.setup.remote(init_method) for w in self.ranks])  # every rank joins at once

    def update(self, batch: Batch, temperature: float, recompute_old: bool = False) -> dict:
        """One step on every rank. recompute_old: pi_old is the learner's own logprobs (not the sampler's),
        needed when samples were not drawn from the policy itself (CUTS) or for truncated IS."""
        plans = plan_updates(batch, self.world_size, self.algo.updates_per_step, self.micro, self.algo.aggregation)
        results = ray.get([w.train.remote(p, self.loss_cfg, temperature, recompute_old)
                           for w, p in zip(self.ranks, plans)])
        keys = set().union(*results)
        return {k: (max(r.get(k, 0.0) for r in results) if k.endswith("max_abs") or k == "ratio_max"
                    else sum(r.get(k, 0.0) for r in results) / len(results)) for k in keys}

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
