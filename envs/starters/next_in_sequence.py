import random
import re


class Env:
    name = "next_in_sequence"

    def sample(self, rng: random.Random, difficulty: int):
        start, step = rng.randint(1, 10 * difficulty), rng.randint(2, 3 + 3 * difficulty)
        return {"terms": [start + i * step for i in range(4)], "step": step}

    def prompt(self, instance):
        terms = ", ".join(str(t) for t in instance["terms"])
        return f"What number comes next: {terms}, ...? Answer with the number only."

    def reference(self, instance):
        return str(instance["terms"][-1] + instance["step"])

    def score(self, instance, response):
        numbers = re.findall(r"-?\d+", response)
        return 1.0 if numbers and numbers[-1] == self.reference(instance) else 0.0
