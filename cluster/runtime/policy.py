"""A policy: one model with its own rollout pool, learner group, weight sync and version.

    generate(prompts, sampling, seed) -> samples (every sample carries the version that produced it)
    update(trajectories, objective)   -> learner step on every rank, version + 1, weights pushed to the pool
    save(folder) / load(folder)       -> DeepSpeed state and an HF model

A ScriptedPolicy answers generate() with fixed responses (tests, scripted runs) and hands every update to
the real policy it stands in for, so an episode never branches on where its samples came from.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from actors.rollout.hf_backend import Sample
from cluster.runtime.learner_group import LearnerGroup
from cluster.runtime.placement import rollout_in_learner
from cluster.runtime.rollout_pool import RolloutPool
from trainers.models import encode_prompt, load_tokenizer, prepare_model
from trainers.objectives import get_objective


class Policy:
    scripted = False

    def __init__(self, name: str, cfg, pcfg, strategy: str, start: bool = True):
        """start=False: its rollout workers and learner ranks are launched and set up in the background;
        start() waits for them (the run launches every policy's actors before waiting for any)."""
        self.name, self.pcfg = name, pcfg
        self.cfg = replace(cfg, model=pcfg.model, rollout=pcfg.rollout, learner=pcfg.learner)  # the run, as seen here
        self.model_path = prepare_model(pcfg.model)
        self.tokenizer = load_tokenizer(self.model_path)
        self.version = 0
        if rollout_in_learner(self.cfg):  # the engine inside learner rank 0: one process fewer
            rc = self.cfg.rollout
            host = {"backend": rc.backend, "dtype": self.cfg.model.dtype, "max_model_len": rc.max_model_len}
            self.learners = LearnerGroup(self.cfg, self.model_path, strategy, name=f"learner-{name}", start=False,
                                         host_rollout=host)
            self.rollout = RolloutPool(self.cfg, self.model_path, strategy, wait=False, hosts=[self.learners.hybrid])
        else:
            self.rollout = RolloutPool(self.cfg, self.model_path, strategy, name=f"rollout-{name}", wait=False)
            self.learners = LearnerGroup(self.cfg, self.model_path, strategy, name=f"learner-{name}", start=False)
        self.learners.begin()  # the ranks set up while the run starts its other actors
        if start:
            self.start()

    def start(self) -> None:
        self.learners.start()
        self.rollout.wait_ready()

    @property
    def sampling(self):
        return self.pcfg.rollout.sampling

    @property
    def max_model_len(self) -> int:
        return self.pcfg.rollout.max_model_len

    def encode(self, text: str, shots=()) -> list[int]:
        """Prompt ids; `shots`: solved (prompt, answer) examples shown first (env.fewshot)."""
        return encode_prompt(self.tokenizer, text, self.pcfg.model.chat_template, shots)

    def generate(self, prompts: list[list[int]], sampling, seed: int) -> dict:
        """n samples per prompt from the current version. `off_policy`: the samples were not drawn from the
        policy's own distribution (CUTS), so the learner recomputes pi_old."""
        return self.collect(self.submit(prompts, sampling, seed))

    def submit(self, prompts: list[list[int]], sampling, seed: int):
        """Start generate() and return a handle at once (the overlapped pipeline): the samples come from the
        version current now, even when an update lands before collect()."""
        return self.rollout.submit(prompts, sampling, seed)

    def collect(self, handle) -> dict:
        out = self.rollout.collect(handle)
        return {**out, "off_policy": handle.sampling.cuts_fraction > 0}

    def update(self, trajectories: list, objective: str, temperature: float = 1.0,
               recompute_old: bool = False) -> dict:
        """One learner step on the trajectories with the named objective, then the new weights to the pool."""
        t0 = time.perf_counter()
        algo, obj = self.cfg.algorithm, get_objective(objective)
        # samples drawn while an earlier update ran (rollout.max_staleness > 0) come from an older version
        stale = max([self.version - t.policy_version for t in trajectories if t.policy_version <= self.version],
                    default=0)
        zero_signal = obj.zero_advantage_is_no_signal and not any(t.has_signal() for t in trajectories)
        if not trajectories or (zero_signal and algo.skip_zero_signal and algo.kl_coef == 0):
            # nothing to learn from (e.g. every prompt's samples scored alike, no KL term): the gradient is
            # exactly zero, so the optimizer does not step and the weights stay where they are
            learner, sync, t1, skipped = {}, {"bytes": 0}, t0, 1.0
        else:
            is_cap = None
            if obj.uses_behaviour_logprobs and stale:  # decoupled PPO: clip against the learner's own pi_old (the
                # proximal policy, recomputed) and weigh each token by pi_old / pi_behaviour, capped
                recompute_old, is_cap = True, algo.tis_cap if algo.tis_cap is not None else algo.stale_is_cap
            self.rollout.sleep()  # colocated engines free the GPU for the learner
            learner = self.learners.update(trajectories, objective, temperature, self.tokenizer.pad_token_id,
                                           recompute_old=recompute_old, is_cap=is_cap)
            self.rollout.wake_up()
            t1 = time.perf_counter()
            self.version += 1
            sync, skipped = self.sync(), 0.0
        t2 = time.perf_counter()
        row = {k: learner.get(k, default) for k, default in obj.reported_metrics.items()}
        row.update({k: v for k, v in learner.items()
                    if k.startswith((f"{objective}/", "update/")) or k in ("tis_weight_mean", "lr")})
        row.update({"policy_version": self.version, "weight_sync/seconds": t2 - t1,
                    "weight_sync/bytes": sync["bytes"], "timing/update": t1 - t0, "update/skipped": skipped,
                    "rollout/staleness": float(stale)})
        return row

    def sync(self) -> dict:
        return self.rollout.sync(self.learners, self.version)

    def sequence_logprobs(self, trajectories: list, reference: bool = False) -> list[float]:
        return self.learners.sequence_logprobs(trajectories, self.tokenizer.pad_token_id, reference=reference)

    def save(self, folder: Path) -> None:
        self.learners.save(str(folder / "deepspeed"), "state", str(folder / "hf"), self.model_path)

    def load(self, folder: Path, version: int) -> None:
        self.learners.load(str(folder / "deepspeed"), "state")
        self.version = version
        self.sync()


class ScriptedPolicy:
    """Fixed responses in order (cycling) instead of samples; every other call goes to the real policy.
    Their logprobs are unknown, so the learner recomputes pi_old for them (`off_policy`)."""

    scripted = True

    def __init__(self, base: Policy, responses: list[str]):
        if not responses:
            raise ValueError("a scripted policy needs at least one response")
        self.base, self.responses = base, responses

    def __getattr__(self, name):
        return getattr(self.base, name)

    def generate(self, prompts: list[list[int]], sampling, seed: int) -> dict:
        samples = [[self._sample(g * sampling.n + j) for j in range(sampling.n)] for g in range(len(prompts))]
        return {"samples": samples, "tokens": 0, "seconds": 0.0, "version": self.base.version, "off_policy": True}

    def submit(self, prompts: list[list[int]], sampling, seed: int) -> dict:
        return self.generate(prompts, sampling, seed)

    def collect(self, handle: dict) -> dict:
        return handle

    def _sample(self, k: int) -> Sample:
        text = self.responses[k % len(self.responses)]
        ids = self.base.tokenizer(text, add_special_tokens=False).input_ids
        return Sample(ids, [0.0] * len(ids), text, "stop")
