"""`cso`: critical-step optimisation."""
from __future__ import annotations

from cluster.episodes.cso.config import CSOConfig
from cluster.episodes.family import Family


def episodes() -> tuple[type, ...]:
    from cluster.episodes.cso.episode import CSOEpisode

    return (CSOEpisode,)


def report():
    from cluster.episodes.cso import report

    return report


FAMILY = Family(name="cso", kinds=("cso",), episodes=episodes, config=CSOConfig, report=report)
