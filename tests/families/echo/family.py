"""The echo family: one folder, declared here, registered only by the tests (tests/cluster/test_families.py)."""
from __future__ import annotations

from cluster.episodes.family import Family
from tests.families.echo.config import EchoConfig


def episodes() -> tuple[type, ...]:
    from tests.families.echo.episode import EchoEpisode

    return (EchoEpisode,)


def report():
    from tests.families.echo import report

    return report


FAMILY = Family(name="echo", kinds=("echo",), episodes=episodes, config=EchoConfig, report=report)
