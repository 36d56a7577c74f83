"""Sound at difficulties 1-3, but sample() raises from difficulty 4 on: L5's search must fail it cleanly."""
import random


class Countdown:
    name = "countdown_product"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        if difficulty >= 4:
            raise ValueError("difficulty too high for this generator")
        return {"values": [rng.randint(2, 9) for _ in range(2 + difficulty)]}

    def prompt(self, instance: dict) -> str:
        return "Multiply together: " + " * ".join(map(str, instance["values"])) + ". Give only the product."

    def reference(self, instance: dict) -> str:
        product = 1
        for v in instance["values"]:
            product *= v
        return str(product)

    def score(self, instance: dict, response: str) -> float:
        words = response.strip().split()
        return 1.0 if words and words[-1] == self.reference(instance) else 0.0
