"""`challenger`: R-Zero's challenger and solver."""
from __future__ import annotations

from cluster.episodes.family import Family
from cluster.episodes.challenger.config import ChallengerConfig


def episodes() -> tuple[type, ...]:
    from cluster.episodes.challenger.episode import ChallengerEpisode

    return (ChallengerEpisode,)


FAMILY = Family(name="challenger", kinds=('challenger',), episodes=episodes, config=ChallengerConfig)
