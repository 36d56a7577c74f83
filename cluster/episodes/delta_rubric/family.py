"""`delta_rubric`: DeltaRubric's disagreement planner and checklist verifier."""
from __future__ import annotations

from cluster.episodes.family import Family
from cluster.episodes.delta_rubric.config import DeltaRubricConfig


def episodes() -> tuple[type, ...]:
    from cluster.episodes.delta_rubric.episode import DeltaRubricEpisode

    return (DeltaRubricEpisode,)


FAMILY = Family(name="delta_rubric", kinds=('delta_rubric',), episodes=episodes, config=DeltaRubricConfig)
