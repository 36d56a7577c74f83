"""The `task` family's settings (episodes.task) and their checks."""
from __future__ import annotations

from dataclasses import dataclass

from cluster.config.errors import failed


@dataclass
class TaskEpisodeConfig:
    """`task`: rollouts on the environment (or, in self-play, the library) -> scores -> the role's update."""
    objective: str = "grpo"  # grpo (group-relative advantages) | dpo (online DPO on pairs from each prompt's group)
    chosen: str = "best"  # dpo: best (the group's highest-scored response) | reference (the environment's answer)
    pair_margin: float = 0.5  # dpo: a pair needs chosen score - rejected score >= this
    heldout_pairs: int = 0  # dpo: pairs on held-out instances whose preference accuracy is logged each step

    def check(self, cfg, policies: dict, judges: dict) -> list[str]:
        return failed(
            (self.objective in ("grpo", "dpo"), f"episodes.task.objective={self.objective!r}: use grpo or dpo"),
            (self.chosen in ("best", "reference"), f"episodes.task.chosen={self.chosen!r}: use best or reference"),
            (self.heldout_pairs >= 0, f"episodes.task.heldout_pairs={self.heldout_pairs}: must be >= 0"))
