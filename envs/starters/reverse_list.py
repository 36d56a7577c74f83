import random
import re


class Env:
    name = "reverse_list"

    def sample(self, rng: random.Random, difficulty: int):
        return {"values": [rng.randint(1, 20) for _ in range(2 + difficulty)]}

    def prompt(self, instance):
        values = ", ".join(str(v) for v in instance["values"])
        return f"Write this list in reverse order: {values}. Answer with the numbers separated by commas."

    def reference(self, instance):
        return ", ".join(str(v) for v in reversed(instance["values"]))

    def score(self, instance, response):
        lines = response.strip().splitlines() or [""]
        numbers = [int(n) for n in re.findall(r"-?\d+", lines[-1])]
        return 1.0 if numbers == instance["values"][::-1] else 0.0
