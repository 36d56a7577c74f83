"""The single controller: one step reads like the algorithm box.

    held-out accuracy before (heldout.tasks)
    for step:
        kind <- schedule(step)                       # warm-up kinds once, then the pattern, repeated
        trajectories per role, metrics <- episode[kind].run(step, ctx)
        start the next steps' rollouts (rollout.max_staleness > 0: they overlap the update)
        for each role: its policy's update with the role's objective, then weight sync
        log; checkpoint
    held-out accuracy after
"""
from __future__ import annotations

import time
from pathlib import Path

from cluster.episodes.registry import active_families, default_pattern
from cluster.episodes.registry import build as build_episode
from cluster.episodes.schedule import Schedule
from cluster.reports.console import Progress
from cluster.rundir import checkpoint as ckpt
from cluster.rundir.metrics import MetricsLog
from cluster.runtime.context import Context


class Driver:
    def __init__(self, cfg, run_dir: Path, resolved_config: dict):
        self.cfg, self.run_dir, self.step = cfg, run_dir, 0
        resume_from = ckpt.find_checkpoint(cfg.resume) if cfg.resume else None
        self.schedule = Schedule(cfg.schedule or default_pattern(cfg), cfg.schedule_warmup)
        self.ctx = Context(cfg, run_dir, resume_from)
        for family in active_families(cfg, self.schedule.kinds()):
            if family.setup is not None:
                family.setup(self.ctx)                                # e.g. self-play's library as the task source
        if resume_from is not None:
            state = ckpt.read_driver_state(resume_from)
            self.step = state["step"]
            self.ctx.load(resume_from, state)
        self.episodes = {kind: build_episode(kind, self.ctx) for kind in self.schedule.kinds()}
        if resume_from is not None:
            for episode in self.episodes.values():
                episode.load(resume_from)
        self.log = MetricsLog(run_dir, cfg, resolved_config, self.step)

    # -- the loop ---------------------------------------------------------------
    def train(self) -> None:
        for episode in self.episodes.values():
            episode.start(self.step)
        if self.step == 0:
            self.measure_heldout("before")
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
        for episode in self.episodes.values():
            episode.finish()
        self.measure_heldout("after")

    def measure_heldout(self, tag: str) -> None:
        """heldout.tasks: the solver role's accuracy on held-out instances -> run_dir/eval_<tag>.json (a family's
        own held-out measurements run in its episodes' start and finish)."""
        if self.cfg.heldout.tasks:
            from cluster.evaluation.heldout import measure

            measure(self.cfg, self.ctx.env, self.ctx.policy("solver"), tag, self.run_dir)

    def train_step(self) -> dict:
        t0 = time.perf_counter()
        episode = self.episodes[self.schedule.kind(self.step)]
        result = episode.run(self.step, self.ctx)                     # rollouts -> envs/judges -> advantages
        self.prefetch()                                               # next steps' rollouts overlap the update
        row = {"step": self.step, "episode": episode.label, "kind": episode.kind, **result.metrics}
        for role, update in result.updates.items():                   # each role: its policy, its objective
            policy = self.ctx.policy(role)
            metrics = policy.update(update.trajectories, update.objective, update.temperature, update.recompute_old)
            row.update(metrics if len(result.updates) == 1 else {f"{role}/{k}": v for k, v in metrics.items()})
        row.update(self.ctx.metrics())
        row["timing/step"] = time.perf_counter() - t0
        return row

    def prefetch(self) -> None:
        """The overlapped pipeline (rollout.max_staleness = k > 0): start the rollouts of the next k steps now,
        with the weights from before this step's update, stopping at a kind that cannot start early."""
        for ahead in range(1, self.cfg.steps - self.step):
            episode = self.episodes[self.schedule.kind(self.step + ahead)]
            if ahead > episode.lookahead(self.ctx):
                break
            episode.prefetch(self.step + ahead, self.ctx)

    # -- checkpoints --------------------------------------------------------------
    def should_checkpoint(self) -> bool:
        every = self.cfg.save_every
        return self.step == self.cfg.steps or (every > 0 and self.step % every == 0)

    def save(self) -> Path:
        folder = ckpt.checkpoint_dir(self.run_dir, self.step)
        folder.mkdir(parents=True, exist_ok=True)
        self.ctx.save(folder)
        for episode in self.episodes.values():
            episode.save(folder)
        ckpt.write_driver_state(folder, {"step": self.step, **self.ctx.state(), "seed": self.cfg.seed})
        ckpt.prune(self.run_dir, self.cfg.keep_checkpoints)
        return folder
