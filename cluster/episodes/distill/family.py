"""`distill`: a teacher trained with GRPO, a student trained (sft) on the teacher's best responses."""
from __future__ import annotations

from cluster.episodes.distill.config import DistillEpisodeConfig
from cluster.episodes.family import Family


def episodes() -> tuple[type, ...]:
    from cluster.episodes.distill.episode import DistillEpisode

    return (DistillEpisode,)


FAMILY = Family(name="distill", kinds=("distill",), episodes=episodes, config=DistillEpisodeConfig)
