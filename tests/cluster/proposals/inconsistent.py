"""Its reference answer is wrong for odd numbers: L2 must refuse it."""
import random


class Parity:
    name = "parity_sum"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        return {"values": [rng.randint(100, 999) for _ in range(3 + int(difficulty))]}

    def prompt(self, instance: dict) -> str:
        return "Add up these numbers: " + ", ".join(map(str, instance["values"]))

    def reference(self, instance: dict) -> str:
        total = sum(instance["values"])
        return str(total if total % 2 == 0 else total + 1)

    def score(self, instance: dict, response: str) -> float:
        return 1.0 if response.strip() == str(sum(instance["values"])) else 0.0
