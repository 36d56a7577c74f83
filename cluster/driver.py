"""The single controller: one GRPO step reads like the algorithm box.

    for step:  sample prompts -> rollouts -> score -> advantages -> update -> sync -> log -> checkpoint
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from cluster import checkpoint as ckpt
from cluster.env_fleet import EnvFleet
from cluster.learner_group import LearnerGroup
from cluster.metrics import MetricsLog, Progress
from cluster.rollout_pool import RolloutPool
from trainers.advantages import group_advantages, zero_advantage_fraction
from trainers.batch import Trajectory, collate
from trainers.cuts import mixed_group_metrics
from trainers.models import encode_prompt, load_tokenizer, prepare_model


class Driver:
    def __init__(self, cfg, run_dir: Path, resolved_config: dict):
        self.cfg, self.run_dir = cfg, run_dir
        self.step, self.version = 0, 0
        resume_from = ckpt.find_checkpoint(cfg.resume) if cfg.resume else None
        if resume_from is not None:
            state = ckpt.read_driver_state(resume_from)
            self.step, self.version = state["step"], state["version"]
        self.model_path = prepare_model(cfg.model)
        self.tokenizer = load_tokenizer(self.model_path)
        strategy = cfg.cluster.placement_strategy
        n = cfg.rollout.sampling.n
        self.env = EnvFleet(cfg, strategy)
        self.rollout = RolloutPool(cfg, self.model_path, strategy)
        self.learners = LearnerGroup(cfg, self.model_path, cfg.algorithm.prompts_per_step * n, strategy)
        if resume_from is not None:
            self.learners.load(str(resume_from / "deepspeed"), "state")
            self.sync_weights()
        self.log = MetricsLog(run_dir, cfg, resolved_config, self.step)

    # -- the loop ---------------------------------------------------------------
    def train(self) -> None:
        progress = Progress(self.cfg.steps, self.step, self.cfg.logger.progress)
        try:
            while self.step < self.cfg.steps:
                row = self.train_step()
                self.log.write(row)
                progress.update(row)
                self.step += 1
                if self.should_checkpoint():
                    self.save()
        finally:
            progress.close()
            self.log.close()

    def train_step(self) -> dict:
        t0 = time.perf_counter()
        cfg, sampling = self.cfg, self.cfg.rollout.sampling
        instances = self.env.sample(self.data_seeds(), cfg.env.difficulty)               # sample prompts
        prompts = [encode_prompt(self.tokenizer, i["prompt"], cfg.model.chat_template) for i in instances]
        t1 = time.perf_counter()
        out = self.rollout.generate(prompts, sampling, seed=cfg.seed * 7919 + self.step)    # rollouts
        t2 = time.perf_counter()
        items = [{"data": inst["data"], "response": s.text}
                 for inst, group in zip(instances, out["samples"]) for s in group]
        rewards, env_metrics = self.env.score(items)                                         # score
        t3 = time.perf_counter()
        trajectories = [Trajectory(prompt_ids=p, response_ids=s.response_ids, behaviour_logprobs=s.logprobs,
                                   group_id=g, policy_version=self.version)
                        for g, (p, group) in enumerate(zip(prompts, out["samples"])) for s in group]
        reward_t = torch.tensor(rewards, dtype=torch.float32)
        group_ids = torch.tensor([t.group_id for t in trajectories])
        advantages = group_advantages(reward_t, group_ids, normalize_std=cfg.algorithm.normalize_std)  # advantages
        for t, r, a in zip(trajectories, rewards, advantages.tolist()):
            t.reward, t.advantage = r, a
        batch = collate(trajectories, pad_id=self.tokenizer.pad_token_id)
        cuts = sampling.cuts_fraction > 0  # CUTS samples are not drawn from the policy: pi_old recomputed
        self.rollout.sleep()  # colocated engines free the GPU for the learner
        learner = self.learners.update(batch, max(sampling.temperature, 1e-6), recompute_old=cuts)   # update
        self.rollout.wake_up()
        t4 = time.perf_counter()
        self.version += 1
        sync = self.sync_weights()                                                             # sync
        t5 = time.perf_counter()
        lengths = torch.tensor([len(t.response_ids) for t in trajectories], dtype=torch.float32)
        return {
            "step": self.step, "policy_version": self.version,
            "reward/mean": reward_t.mean().item(), "reward/std": reward_t.std().item(),
            "reward/max": reward_t.max().item(),
            "zero_advantage_fraction": zero_advantage_fraction(reward_t, group_ids),
            "response_length/mean": lengths.mean().item(),
            "loss": learner.get("loss", 0.0), "pg_loss": learner.get("pg_loss", 0.0), "kl": learner.get("kl", 0.0),
            "clip_frac": learner.get("clip_frac", 0.0), "grad_norm": learner.get("grad_norm", 0.0),
            "ratio_max": learner.get("ratio_max", 1.0),
            "logprob_gap/mean_abs": learner.get("logprob_gap/mean_abs", 0.0),
            "logprob_gap/max_abs": learner.get("logprob_gap/max_abs", 0.0),
            "weight_sync/seconds": t5 - t4, "weight_sync/bytes": sync["bytes"],
            "rollout/tokens_per_s": out["tokens"] / max(t2 - t1, 1e-9),
            "timing/rollout": t2 - t1, "timing/score": t3 - t2, "timing/update": t4 - t3,
            "timing/step": t5 - t0, **env_metrics,
            **(mixed_group_metrics(reward_t, group_ids, torch.tensor([s.cuts for g in out["samples"] for s in g]))
               if cuts else {}),
        }

    # -- pieces -----------------------------------------------------------------
    def data_seeds(self) -> list[int]:
        """Instance seeds are a function of (seed, step): resuming needs no sampler state."""
        base = self.cfg.seed * 1_000_003 + self.step * 10_007
        return [base + i for i in range(self.cfg.algorithm.prompts_per_step)]

    def sync_weights(self) -> dict:
        return self.rollout.sync(self.learners, self.version)

    def should_checkpoint(self) -> bool:
        every = self.cfg.save_every
        return self.step == self.cfg.steps or (every > 0 and self.step % every == 0)

    def save(self) -> Path:
        folder = ckpt.checkpoint_dir(self.run_dir, self.step)
        folder.mkdir(parents=True, exist_ok=True)
        self.learners.save(str(folder / "deepspeed"), "state", str(folder / "hf"), self.model_path)
        ckpt.write_driver_state(folder, {"step": self.step, "version": self.version, "seed": self.cfg.seed})
        ckpt.prune(self.run_dir, self.cfg.keep_checkpoints)
        return folder
