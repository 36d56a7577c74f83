"""A test environment for critical-step optimisation on the tiny model: a response succeeds when it holds "OK".
The tiny model (random weights) almost never writes it; the oracle expert's step (the reference) always does.

Self-contained (stdlib only): environment files are loaded from their source text inside a worker process.
"""
import random


class OkEnv:
    name = "cso_ok_env"
    description = "Write OK."
    answer_format = "raw"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        return {"k": rng.randrange(100)}

    def prompt(self, instance: dict) -> str:
        return f"Case {instance['k']}, say it:"

    def reference(self, instance: dict) -> str:
        return "OK"

    def score(self, instance: dict, response: str) -> float:
        return 1.0 if "OK" in response else 0.0
