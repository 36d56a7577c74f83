import random
import re


class Env:
    name = "times_table"

    def sample(self, rng: random.Random, difficulty: int):
        return {"a": rng.randint(3, 6 + 4 * difficulty), "b": rng.randint(2, 9)}

    def prompt(self, instance):
        return f"What is {instance['a']} times {instance['b']}? Answer with the number only."

    def reference(self, instance):
        return str(instance["a"] * instance["b"])

    def score(self, instance, response):
        numbers = re.findall(r"-?\d+", response)
        return 1.0 if numbers and numbers[-1] == self.reference(instance) else 0.0
