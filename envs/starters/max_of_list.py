import random
import re


class Env:
    name = "max_of_list"

    def sample(self, rng: random.Random, difficulty: int):
        return {"values": [rng.randint(1, 100 * difficulty) for _ in range(2 + difficulty)]}

    def prompt(self, instance):
        values = ", ".join(str(v) for v in instance["values"])
        return f"What is the largest number in this list: {values}? Answer with the number only."

    def reference(self, instance):
        return str(max(instance["values"]))

    def score(self, instance, response):
        numbers = re.findall(r"-?\d+", response)
        return 1.0 if numbers and numbers[-1] == self.reference(instance) else 0.0
