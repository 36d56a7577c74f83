"""`task`: the solver role on the run's task source: the environment (env=...), or a library a family installs.

    instances <- the task source at seeds(step) (self-play's library: weighted toward p ~ 0.5)
    samples   <- the solver's policy, n per prompt
    rewards   <- the environment's score (sandboxed executors)
    grpo: group-relative advantages per prompt    dpo: one pair per prompt (chosen vs rejected)
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from cluster.config.seeds import seed_range, step_sampling, task_set
from cluster.episodes.protocol import Episode, EpisodeResult, RoleUpdate
from cluster.episodes.common import response_ids, reward_metrics, to_trajectories
from trainers.batch import Trajectory
from trainers.cuts import mixed_group_metrics

HELDOUT = task_set(4)  # online DPO's held-out pairs: instances no step trains on; also their sampling seed


class TaskEpisode(Episode):
    kind, roles, label = "task", ("solver",), "solver"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.ec = ctx.cfg.episodes.task
        self.heldout: list[Trajectory] | None = None
        self.pending: dict[int, tuple] = {}  # step -> (instances, prompts, rollouts in flight)

    def run(self, step: int, ctx) -> EpisodeResult:
        policy = ctx.policy("solver")
        sampling = policy.sampling
        if self.ec.objective == "dpo" and self.ec.heldout_pairs and self.heldout is None:
            self.heldout = self._heldout_pairs(ctx)
        t0 = time.perf_counter()
        instances, prompts, handle = self.pending.pop(step, None) or self._submit(step, ctx)
        t1 = time.perf_counter()
        out = policy.collect(handle)  # prefetched: only the part of generation the update did not cover
        t2 = time.perf_counter()
        items = [{"data": inst["data"], "response": s.text, "env": inst.get("env")}
                 for inst, group in zip(instances, out["samples"]) for s in group]
        rewards, env_metrics = ctx.env.score(items)
        env_metrics.update(ctx.tasks.record(step, [i["env"] for i in items], rewards))
        t3 = time.perf_counter()
        trajectories = to_trajectories(prompts, out["samples"], out["version"], "solver", self.kind, rewards)
        metrics = reward_metrics(trajectories)
        temperature = max(sampling.temperature, 1e-6)
        if self.ec.objective == "dpo":
            trajectories, pair_metrics = self._pairs(policy, instances, trajectories)
            metrics.update(pair_metrics)
        else:
            ctx.set_advantages("solver", trajectories)
        if sampling.cuts_fraction > 0:
            reward_t = torch.tensor(rewards, dtype=torch.float32)
            group_ids = torch.tensor([g for g, group in enumerate(out["samples"]) for _ in group])
            metrics.update(mixed_group_metrics(reward_t, group_ids,
                                               torch.tensor([s.cuts for g in out["samples"] for s in g])))
        if self.heldout:
            metrics.update(self._heldout_accuracy(policy))
        # the engine's own generation time: with the overlapped pipeline, t2 - t1 is only the wait for it
        metrics.update({"rollouts/total": len(items),  # sequences generated: the rollout budget a comparison equalises
                        "rollout/tokens": out["tokens"],
                        "rollout/tokens_per_s": out["tokens"] / max(out["seconds"], 1e-9), "timing/rollout": t2 - t1,
                        "timing/score": t3 - t2, "timing/sample": t1 - t0, **env_metrics})
        update = RoleUpdate(trajectories, self.ec.objective, temperature, recompute_old=out["off_policy"])
        return EpisodeResult({"solver": update}, metrics)

    def _submit(self, step: int, ctx) -> tuple[list[dict], list[list[int]], object]:
        """Draw the step's instances and start its rollouts."""
        policy, cfg = ctx.policy("solver"), ctx.cfg
        instances = ctx.tasks.sample(step, ctx.data_seeds(step))
        prompts = [policy.encode(i["prompt"], ctx.shots(i.get("env"), i.get("difficulty", cfg.env.difficulty)))
                   for i in instances]
        return instances, prompts, policy.submit(prompts, policy.sampling, seed=step_sampling(cfg.seed, step))

    def lookahead(self, ctx) -> int:
        return ctx.policy("solver").pcfg.rollout.max_staleness

    def prefetch(self, step: int, ctx) -> None:
        if step not in self.pending:
            self.pending[step] = self._submit(step, ctx)

    # -- online DPO: pairs from each prompt's group --------------------------------------
    def _pairs(self, policy, instances: list[dict], trajectories: list[Trajectory]) -> tuple[list[Trajectory], dict]:
        """Per prompt: chosen = the best-scored sample (or the environment's reference answer), rejected = the
        worst-scored sample; kept when chosen - rejected >= pair_margin."""
        groups: dict[int, list[Trajectory]] = {}
        for t in trajectories:
            groups.setdefault(t.group_id, []).append(t)
        pairs: list[Trajectory] = []
        for g, group in groups.items():
            worst = min(group, key=lambda t: t.reward)
            if self.ec.chosen == "reference":
                best = self._reference(policy, instances[g], worst, reward=1.0)
            else:
                best = max(group, key=lambda t: t.reward)
            if best.reward - worst.reward < self.ec.pair_margin:
                continue
            pid = len(pairs) // 2
            pairs += [_as_pair(best, pid, True), _as_pair(worst, pid, False)]
        return pairs, {"dpo/pairs": len(pairs) // 2, "dpo/pair_fraction": len(pairs) / 2 / max(len(groups), 1)}

    @staticmethod
    def _reference(policy, instance: dict, like: Trajectory, reward: float) -> Trajectory:
        ids = response_ids(policy.tokenizer, instance["reference"])
        return Trajectory(prompt_ids=like.prompt_ids, response_ids=ids, behaviour_logprobs=[0.0] * len(ids),
                          group_id=like.group_id, role=like.role, episode=like.episode,
                          policy_version=like.policy_version, reward=reward, metadata={"source": "reference"})

    def _heldout_pairs(self, ctx) -> list[Trajectory]:
        """Pairs on instances no step trains on: the environment's answer vs the policy's worst sample now."""
        policy = ctx.policy("solver")
        seeds = seed_range(HELDOUT, self.ec.heldout_pairs)
        instances = ctx.env.sample(seeds, ctx.cfg.env.difficulty)
        prompts = [policy.encode(i["prompt"]) for i in instances]
        out = policy.generate(prompts, policy.sampling, seed=HELDOUT)
        items = [{"data": i["data"], "response": s.text} for i, g in zip(instances, out["samples"]) for s in g]
        rewards, _ = ctx.env.score(items)
        trajectories = to_trajectories(prompts, out["samples"], out["version"], "solver", self.kind, rewards)
        pairs: list[Trajectory] = []
        for g, inst in enumerate(instances):
            worst = min((t for t in trajectories if t.group_id == g), key=lambda t: t.reward)
            if worst.reward < 1.0:
                pid = len(pairs) // 2
                pairs += [_as_pair(self._reference(policy, inst, worst, 1.0), pid, True), _as_pair(worst, pid, False)]
        return pairs

    def _heldout_accuracy(self, policy) -> dict:
        """Implicit-reward preference accuracy: (log pi - log ref)(chosen) > (log pi - log ref)(rejected)."""
        pi = policy.sequence_logprobs(self.heldout)
        ref = policy.sequence_logprobs(self.heldout, reference=True)
        beta = self.ctx.cfg.algorithm.dpo.beta  # margins as DPO's implicit rewards: beta * log-ratio differences
        margins = [beta * ((pi[i] - ref[i]) - (pi[i + 1] - ref[i + 1])) for i in range(0, len(pi), 2)]
        return {"dpo/heldout_accuracy": sum(m > 0 for m in margins) / len(margins),
                "dpo/heldout_margin": sum(margins) / len(margins)}

    def save(self, folder: Path) -> None:
        """online DPO's held-out pairs (made once, measured every step)."""
        if self.heldout is not None:
            out = self.state_dir(folder)
            out.mkdir(parents=True, exist_ok=True)
            (out / "heldout_pairs.json").write_text(json.dumps([t.to_dict() for t in self.heldout]))

    def load(self, folder: Path) -> None:
        saved = self.state_dir(folder) / "heldout_pairs.json"
        if saved.is_file():
            self.heldout = [Trajectory.from_dict(d) for d in json.loads(saved.read_text())]


def _as_pair(t: Trajectory, pair_id: int, chosen: bool) -> Trajectory:
    return Trajectory(**{**t.__dict__, "pair_id": pair_id, "chosen": chosen})
