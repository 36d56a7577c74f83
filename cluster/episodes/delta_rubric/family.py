"""`delta_rubric`: DeltaRubric's disagreement planner and checklist verifier."""
from __future__ import annotations

from cluster.episodes.delta_rubric.config import DeltaRubricConfig
from cluster.episodes.family import Family


def episodes() -> tuple[type, ...]:
    from cluster.episodes.delta_rubric.episode import DeltaRubricEpisode

    return (DeltaRubricEpisode,)


def report():
    from cluster.episodes.delta_rubric import report

    return report


FAMILY = Family(name="delta_rubric", kinds=("delta_rubric",), episodes=episodes, config=DeltaRubricConfig,
                report=report)
