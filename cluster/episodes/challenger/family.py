"""`challenger`: R-Zero's challenger and solver."""
from __future__ import annotations

from cluster.episodes.challenger.config import ChallengerConfig
from cluster.episodes.family import Family


def episodes() -> tuple[type, ...]:
    from cluster.episodes.challenger.episode import ChallengerEpisode

    return (ChallengerEpisode,)


def report():
    from cluster.episodes.challenger import report

    return report


FAMILY = Family(name="challenger", kinds=("challenger",), episodes=episodes, config=ChallengerConfig,
                report=report)
