"""`task`: the solver role on the run's task source (the environment, or a library a family installs)."""
from __future__ import annotations

from cluster.episodes.family import Family
from cluster.episodes.task.config import TaskEpisodeConfig


def episodes() -> tuple[type, ...]:
    from cluster.episodes.task.episode import TaskEpisode

    return (TaskEpisode,)


def report():
    from cluster.episodes.task import report

    return report


FAMILY = Family(name="task", kinds=("task",), episodes=episodes, config=TaskEpisodeConfig, report=report)
