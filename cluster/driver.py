"""The single controller: one step reads like the algorithm box.

    for step:
        if self-play and it is the generator's turn:
            example envs -> proposals -> gates (parse, L1-L3, novelty, L4, L5) -> admit -> generator reward
        else:
            sample prompts (env, or the library weighted toward p ~ 0.5) -> rollouts -> score -> usage/rotation
        advantages -> update -> sync -> log -> checkpoint
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from actors.rollout.hf_backend import Sample
from cluster import checkpoint as ckpt
from cluster.env_fleet import EnvFleet
from cluster.learner_group import LearnerGroup
from cluster.metrics import MetricsLog, Progress
from cluster.rollout_pool import RolloutPool
from cluster.selfplay import EvoEnv, Proposal
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
        self.evo = EvoEnv(cfg, run_dir, self.env, self.rollout, self.tokenizer, resume_from) \
            if cfg.selfplay.enabled else None
        self.log = MetricsLog(run_dir, cfg, resolved_config, self.step)

    # -- the loop ---------------------------------------------------------------
    def train(self) -> None:
        heldout = self.evo is not None and bool(self.cfg.selfplay.heldout)
        if heldout and self.step == 0:
            self.evo.heldout("before", self.run_dir)
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
        if heldout:
            self.evo.heldout("after", self.run_dir)

    def train_step(self) -> dict:
        if self.evo is not None and self.evo.is_generator_step(self.step):
            return self.generator_step()
        return self.solver_step()

    def solver_step(self) -> dict:
        """GRPO on the task: env=... or, in self-play, instances drawn from the environment library."""
        t0 = time.perf_counter()
        cfg, sampling = self.cfg, self.cfg.rollout.sampling
        if self.evo is not None:                                                                # sample prompts
            instances = self.evo.solver_instances(self.step, self.data_seeds())
        else:
            instances = self.env.sample(self.data_seeds(), cfg.env.difficulty)
        prompts = [encode_prompt(self.tokenizer, i["prompt"], cfg.model.chat_template) for i in instances]
        t1 = time.perf_counter()
        out = self.rollout.generate(prompts, sampling, seed=cfg.seed * 7919 + self.step)     # rollouts
        t2 = time.perf_counter()
        items = [{"data": inst["data"], "response": s.text, "env": inst.get("env")}
                 for inst, group in zip(instances, out["samples"]) for s in group]
        rewards, env_metrics = self.env.score(items)                                         # score
        if self.evo is not None:
            env_metrics.update(self.evo.record_solver(self.step, [i["env"] for i in items], rewards))
        t3 = time.perf_counter()
        cuts = sampling.cuts_fraction > 0  # CUTS samples are not drawn from the policy: pi_old recomputed
        row = self.learn(prompts, out["samples"], rewards, max(sampling.temperature, 1e-6), recompute_old=cuts)
        if cuts:
            reward_t = torch.tensor(rewards, dtype=torch.float32)
            group_ids = torch.tensor([g for g, group in enumerate(out["samples"]) for _ in group])
            row.update(mixed_group_metrics(reward_t, group_ids,
                                           torch.tensor([s.cuts for g in out["samples"] for s in g])))
        row.update({"episode": "solver", "rollout/tokens_per_s": out["tokens"] / max(t2 - t1, 1e-9),
                    "timing/rollout": t2 - t1, "timing/score": t3 - t2, "timing/step": time.perf_counter() - t0,
                    **env_metrics})
        return row

    def generator_step(self) -> dict:
        """EvoEnv: the policy writes environments; gates judge them; the generator reward trains the policy."""
        t0 = time.perf_counter()
        texts, lineages = self.evo.generator_prompts(self.step)                              # example envs
        prompts = [encode_prompt(self.tokenizer, t, self.cfg.model.chat_template) for t in texts]
        sampling = self.evo.generator_sampling()
        if self.evo.fixed:  # scripted proposals stand in for the policy's responses
            samples = [[self._scripted(g * sampling.n + j) for j in range(sampling.n)] for g in range(len(prompts))]
            tokens = 0
        else:
            out = self.rollout.generate(prompts, sampling, seed=self.cfg.seed * 7919 + self.step)  # proposals
            samples, tokens = out["samples"], out["tokens"]
        t1 = time.perf_counter()
        proposals = [Proposal(group=g, lineage=lineages[g], text=s.text)
                     for g, group in enumerate(samples) for s in group]
        gate_metrics = self.evo.judge_proposals(self.step, proposals)                       # gates L1..L5
        t2 = time.perf_counter()
        row = self.learn(prompts, samples, [p.reward for p in proposals], max(sampling.temperature, 1e-6),
                         recompute_old=bool(self.evo.fixed))
        row.update({"episode": "generator", "rollout/tokens_per_s": tokens / max(t1 - t0, 1e-9),
                    "timing/rollout": t1 - t0, "timing/gates": t2 - t1, "timing/step": time.perf_counter() - t0,
                    **gate_metrics})
        return row

    def _scripted(self, k: int) -> Sample:
        text = self.evo.fixed_response(k)
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        return Sample(ids, [0.0] * len(ids), text, "stop")  # logprobs unknown: the learner recomputes pi_old

    def learn(self, prompts, samples, rewards: list[float], temperature: float, recompute_old: bool) -> dict:
        """advantages -> update -> sync: the part of a step shared by every episode kind."""
        trajectories = [Trajectory(prompt_ids=p, response_ids=s.response_ids, behaviour_logprobs=s.logprobs,
                                   group_id=g, policy_version=self.version)
                        for g, (p, group) in enumerate(zip(prompts, samples)) for s in group]
        reward_t = torch.tensor(rewards, dtype=torch.float32)
        group_ids = torch.tensor([t.group_id for t in trajectories])
        advantages = group_advantages(reward_t, group_ids, normalize_std=self.cfg.algorithm.normalize_std)
        for t, r, a in zip(trajectories, rewards, advantages.tolist()):
            t.reward, t.advantage = r, a
        t0 = time.perf_counter()
        algo = self.cfg.algorithm
        if algo.skip_zero_signal and algo.kl_coef == 0 and not advantages.any():
            # no prompt has a reward spread and there is no KL term: the gradient is exactly zero
            learner, sync, t1, skipped = {}, {"bytes": 0}, t0, 1.0
        else:
            batch = collate(trajectories, pad_id=self.tokenizer.pad_token_id)
            self.rollout.sleep()  # colocated engines free the GPU for the learner
            learner = self.learners.update(batch, temperature, recompute_old=recompute_old)  # update
            self.rollout.wake_up()
            t1 = time.perf_counter()
            self.version += 1
            sync, skipped = self.sync_weights(), 0.0                                           # sync
        t2 = time.perf_counter()
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
            "weight_sync/seconds": t2 - t1, "weight_sync/bytes": sync["bytes"], "timing/update": t1 - t0,
            "update/skipped": skipped,
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
        if self.evo is not None:
            self.evo.save(folder)
        ckpt.write_driver_state(folder, {"step": self.step, "version": self.version, "seed": self.cfg.seed})
        ckpt.prune(self.run_dir, self.cfg.keep_checkpoints)
        return folder
