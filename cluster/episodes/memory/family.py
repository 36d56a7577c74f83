"""Memory agents: long-document QA with tools (memory_agent), the scripted expert's warm start (memory_expert) and
the MemAgent-style baseline (memagent), one settings group (episodes.memory)."""
from __future__ import annotations

from cluster.episodes.family import Family
from cluster.episodes.memory.config import MemoryConfig


def episodes() -> tuple[type, ...]:
    from cluster.episodes.memory.episode import MemAgentEpisode, MemoryAgentEpisode, MemoryExpertEpisode

    return MemoryAgentEpisode, MemoryExpertEpisode, MemAgentEpisode


def report():
    from cluster.episodes.memory import report

    return report


def commands() -> dict:
    from cluster.episodes.memory.replay import main

    return {"replay": main}


FAMILY = Family(name="memory", kinds=("memory_agent", "memory_expert", "memagent"), episodes=episodes,
                config=MemoryConfig, report=report,
                command_help=(("replay RUN", "a memory-agent run's episodes; --episode N prints one transcript (tool "
                                             "calls, outputs, deletions, reward)"),),
                commands=commands)
