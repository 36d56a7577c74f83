import random
import re


class Env:
    name = "larger_number"

    def sample(self, rng: random.Random, difficulty: int):
        a, b = rng.sample(range(10, 10 ** (difficulty + 1)), 2)
        return {"a": a, "b": b}

    def prompt(self, instance):
        return f"Which number is larger: {instance['a']} or {instance['b']}? Answer with the number only."

    def reference(self, instance):
        return str(max(instance["a"], instance["b"]))

    def score(self, instance, response):
        numbers = re.findall(r"-?\d+", response)
        return 1.0 if numbers and numbers[-1] == self.reference(instance) else 0.0
