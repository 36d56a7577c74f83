"""`distill`: two roles, usually two policies. The teacher learns the task with GRPO on its own rollouts;
the student learns (sft) the teacher's best response to each prompt that scores at least
`episodes.distill.min_reward` (rejection-sampling distillation). The student may be a smaller model with
another tokenizer: it sees the prompt and the response as text, encoded its own way.
"""
from __future__ import annotations

import time

from cluster.config.seeds import step_sampling
from cluster.episodes.protocol import Episode, EpisodeResult, RoleUpdate
from cluster.episodes.common import response_ids, reward_metrics, to_trajectories
from trainers.batch import Trajectory


class DistillEpisode(Episode):
    kind, roles, label = "distill", ("teacher", "student"), "distill"

    def run(self, step: int, ctx) -> EpisodeResult:
        teacher, student, cfg = ctx.policy("teacher"), ctx.policy("student"), ctx.cfg
        instances = ctx.env.sample(ctx.data_seeds(step), cfg.env.difficulty)
        prompts = [teacher.encode(i["prompt"]) for i in instances]
        t0 = time.perf_counter()
        out = teacher.generate(prompts, teacher.sampling, seed=step_sampling(cfg.seed, step))
        t1 = time.perf_counter()
        items = [{"data": inst["data"], "response": s.text} for inst, g in zip(instances, out["samples"]) for s in g]
        rewards, env_metrics = ctx.env.score(items)
        taught = to_trajectories(prompts, out["samples"], out["version"], "teacher", self.kind, rewards)
        ctx.set_advantages("teacher", taught)
        texts = [s.text for g in out["samples"] for s in g]
        targets = []
        for g, inst in enumerate(instances):
            best = max((k for k, t in enumerate(taught) if t.group_id == g), key=lambda k: taught[k].reward)
            if taught[best].reward >= ctx.cfg.episodes.distill.min_reward:
                ids = response_ids(student.tokenizer, texts[best])
                if ids:
                    targets.append(Trajectory(prompt_ids=student.encode(inst["prompt"]), response_ids=ids,
                                              behaviour_logprobs=[0.0] * len(ids), group_id=g, role="student",
                                              episode=self.kind, policy_version=student.version,
                                              reward=taught[best].reward))
        metrics = {**reward_metrics(taught), **env_metrics, "distill/targets": len(targets),
                   "distill/target_reward": sum(t.reward for t in targets) / max(len(targets), 1),
                   "rollout/tokens_per_s": out["tokens"] / max(t1 - t0, 1e-9), "timing/rollout": t1 - t0}
        temperature = max(teacher.sampling.temperature, 1e-6)
        return EpisodeResult({"teacher": RoleUpdate(taught, "grpo", temperature, recompute_old=out["off_policy"]),
                              "student": RoleUpdate(targets, "sft")}, metrics)
