"""Any non-empty answer scores 1: L3 must refuse it."""
import random


class Echo:
    name = "echo_anything"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        return {"word": "".join(rng.choice("abcdef") for _ in range(4 + int(difficulty)))}

    def prompt(self, instance: dict) -> str:
        return "Write anything at all about " + instance["word"]

    def reference(self, instance: dict) -> str:
        return instance["word"]

    def score(self, instance: dict, response: str) -> float:
        return 1.0 if response.strip() else 0.0
