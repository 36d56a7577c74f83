"""`evoenv`: the generator role writes environments; the gates judge them; the generator reward trains it.

    prompts   <- library environments as examples
    proposals <- the generator's responses (n per prompt: a GRPO group)
    gates     <- parse, L1-L3 (sandbox), novelty, L4 (the reviewer judge), L5 (the solver role's pass rate)
    reward    <- 1 - p or min(p, 1 - p) for admitted proposals, 0 (or partial credit) otherwise
The solver side of self-play is the `task` episode over the library (cluster/episodes/selfplay/library_loop.py owns the library).
"""
from __future__ import annotations

import time
from cluster.config.seeds import step_sampling
from cluster.episodes.protocol import Episode, EpisodeResult, RoleUpdate
from cluster.episodes.common import reward_metrics, to_trajectories
from cluster.episodes.selfplay.library_loop import Proposal


class EvoEnvEpisode(Episode):
    kind, roles, label = "evoenv", ("generator", "solver"), "generator"

    def __init__(self, ctx):
        super().__init__(ctx)
        if "selfplay" not in ctx.parts:
            raise ValueError("the evoenv episode needs self-play: set selfplay=evoenv (or selfplay.enabled=true)")
        self.library = ctx.parts["selfplay"]

    def start(self, step: int) -> None:
        if step == 0:
            self._measure_generator("before")

    def finish(self) -> None:
        self._measure_generator("after")

    def _measure_generator(self, tag: str) -> None:
        """selfplay.generator_heldout: the generator's gate pass rates on fixed prompts -> generator_eval_<tag>.json."""
        if self.ctx.cfg.selfplay.generator_heldout:
            self.library.measure_generator(tag, self.ctx.policy("generator"), self.ctx.run_dir)

    def run(self, step: int, ctx) -> EpisodeResult:
        generator, evo = ctx.policy("generator"), self.library
        t0 = time.perf_counter()
        texts, lineages = evo.generator_prompts(step, generator)
        prompts = [evo.encode_generator_prompt(generator, t) for t in texts]
        sampling = evo.generator_sampling(generator)
        out = generator.generate(prompts, sampling, seed=step_sampling(ctx.cfg.seed, step))
        t1 = time.perf_counter()
        proposals = [Proposal(group=g, lineage=lineages[g], text=ctx.cfg.selfplay.response_prefix + s.text)
                     for g, group in enumerate(out["samples"]) for s in group]
        gate_metrics = evo.judge_proposals(step, proposals)
        t2 = time.perf_counter()
        trajectories = to_trajectories(prompts, out["samples"], out["version"], "generator", self.kind,
                                       [p.reward for p in proposals])
        ctx.set_advantages("generator", trajectories)
        metrics = {**reward_metrics(trajectories), "rollout/tokens_per_s": out["tokens"] / max(t1 - t0, 1e-9),
                   "timing/rollout": t1 - t0, "timing/gates": t2 - t1, **gate_metrics}
        update = RoleUpdate(trajectories, "grpo", max(sampling.temperature, 1e-6), recompute_old=out["off_policy"])
        return EpisodeResult({"generator": update}, metrics)
