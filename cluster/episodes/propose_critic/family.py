"""`propose_critic`: Propose-then-Critic co-evolution of a proposer and a critic."""
from __future__ import annotations

from cluster.episodes.family import Family
from cluster.episodes.propose_critic.config import ProposeCriticConfig


def episodes() -> tuple[type, ...]:
    from cluster.episodes.propose_critic.episode import ProposeCriticEpisode

    return (ProposeCriticEpisode,)


def report():
    from cluster.episodes.propose_critic import report

    return report


FAMILY = Family(name="propose_critic", kinds=("propose_critic",), episodes=episodes, config=ProposeCriticConfig,
                report=report)
