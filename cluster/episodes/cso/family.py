"""`cso`: critical-step optimisation."""
from __future__ import annotations

from cluster.episodes.family import Family
from cluster.episodes.cso.config import CSOConfig


def episodes() -> tuple[type, ...]:
    from cluster.episodes.cso.episode import CSOEpisode

    return (CSOEpisode,)


FAMILY = Family(name="cso", kinds=('cso',), episodes=episodes, config=CSOConfig)
