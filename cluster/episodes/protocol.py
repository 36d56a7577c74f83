"""The episode protocol: what every episode of a family implements, and what its step returns.

    episode = EPISODES[kind](ctx)
    result = episode.run(step, ctx)    # rollouts -> environments / judges -> trajectories per role, advantages set
    next_episode.prefetch(step + 1, ctx)   # rollout.max_staleness > 0: next rollouts run during the update
    for role, update in result.updates.items():
        ctx.policy(role).update(update.trajectories, update.objective, ...)

`roles` names the roles an episode trains or asks; config maps each role to a policy (`roles.<role>`), so two
roles may share one policy (today's self-play) or use two. `start`/`finish` run before the first and after
the last step (held-out measurements); `save` writes what the episode must carry over a resume, `load` reads it
back; `record` appends the step's records (what a person or `evoforge replay` reads) to run_dir/episodes/.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cluster.episodes.common import append_records, trim_records
from trainers.batch import Trajectory


@dataclass
class RoleUpdate:
    trajectories: list[Trajectory]
    objective: str = "grpo"  # a name in trainers/objectives.py
    temperature: float = 1.0  # the sampling temperature the behaviour logprobs were taken at
    recompute_old: bool = False  # samples not drawn from the policy itself (CUTS, scripted): pi_old recomputed


@dataclass
class EpisodeResult:
    updates: dict[str, RoleUpdate]
    metrics: dict = field(default_factory=dict)


class Episode:
    kind = ""
    roles: tuple[str, ...] = ()
    label = ""  # the row's "episode" value: the trained role for one-role kinds (solver, generator), else kind

    def __init__(self, ctx):
        self.ctx = ctx

    def run(self, step: int, ctx) -> EpisodeResult:
        raise NotImplementedError

    def lookahead(self, ctx) -> int:
        """How many steps ahead this kind may start its rollouts (rollout.max_staleness); 0: it cannot."""
        return 0

    def prefetch(self, step: int, ctx) -> None:
        """Start the rollouts of `step` now (the overlapped pipeline); run(step) collects them."""

    def start(self, step: int) -> None:
        """Before the first step of this process (step > 0 on resume): the records of `step` and later, written
        by the run that is resumed, are dropped (the steps run again). An override calls this too."""
        trim_records(self.records, step)

    def finish(self) -> None:
        """After the last step."""

    # -- the per-step records: run_dir/episodes/<kind>.jsonl, one JSON line each ----------------------------
    @property
    def records(self) -> Path:
        return self.ctx.run_dir / "episodes" / f"{self.kind}.jsonl"

    def record(self, step: int, rows: list[dict]) -> None:
        append_records(self.records, [{"step": step, **r} for r in rows])

    # -- checkpoints: what a resume needs, under <checkpoint>/episodes/<kind>/ ---------------------------------
    def state_dir(self, folder: Path) -> Path:
        return folder / "episodes" / self.kind

    def save(self, folder: Path) -> None:
        """Write the episode's state into state_dir(folder). Here: a copy of the step records so far, which
        `evoforge replay` reads from a checkpoint too; an override calls this as well."""
        if self.records.is_file():
            self.state_dir(folder).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.records, self.state_dir(folder) / self.records.name)

    def load(self, folder: Path) -> None:
        """Read what save() wrote (a resumed run, before its first step)."""
