"""The task source the `task` episode trains the solver on: instances of the run's environment (env.name), unless
a family installs another in its set-up (self-play: its environment library, which also records the solver's
results to retire what it has mastered)."""
from __future__ import annotations


class EnvTasks:
    def __init__(self, fleet, difficulty: int):
        self.fleet, self.difficulty = fleet, difficulty

    def sample(self, step: int, seeds: list[int]) -> list[dict]:
        """One instance per seed."""
        return self.fleet.sample(seeds, self.difficulty)

    def record(self, step: int, envs: list, rewards: list[float]) -> dict:
        """The solver's rewards on the step's instances; metrics of the source (none here)."""
        return {}
