"""EvoEnv self-play: the generator writes environments, the gates admit some, and the library they join becomes
the run's task source (the `task` episode trains the solver on it). Settings: the top-level `selfplay` group."""
from __future__ import annotations

from cluster.episodes.family import Family
from cluster.episodes.selfplay.config import SelfPlayConfig


def episodes() -> tuple[type, ...]:
    from cluster.episodes.selfplay.episode import EvoEnvEpisode

    return (EvoEnvEpisode,)


def active(cfg, pattern: list[str]) -> bool:
    return cfg.selfplay.enabled or "evoenv" in pattern


def default_schedule(cfg) -> list[str] | None:
    """generator_every task steps on the library, then one generator step."""
    sp = cfg.selfplay
    return ["task"] * sp.generator_every + ["evoenv"] if sp.enabled else None


def setup(ctx) -> None:
    from cluster.episodes.selfplay.setup import install

    install(ctx)


def report():
    from cluster.episodes.selfplay import report

    return report


FAMILY = Family(name="selfplay", kinds=("evoenv",), episodes=episodes, config=SelfPlayConfig, group="selfplay",
                active=active, default_schedule=default_schedule, setup=setup, report=report)
