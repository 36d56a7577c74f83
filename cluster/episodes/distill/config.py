"""The `distill` family's settings (episodes.distill)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DistillEpisodeConfig:
    """`distill`: the teacher is trained with GRPO on its rollouts; the student learns (sft) the teacher's
    best response to each prompt that scores at least min_reward (rejection-sampling distillation)."""
    min_reward: float = 0.5

    def check(self, cfg, policies: dict, judges: dict) -> list[str]:
        return []
