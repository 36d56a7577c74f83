"""digit_squares: the sum of the squares of a number's digits (a novel, valid environment)."""
import random


class DigitSquares:
    name = "digit_squares"
    description = "Sum of the squares of the decimal digits of a long number."

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        length = 6 + 3 * max(1, int(difficulty))
        digits = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(length - 1)]
        return {"number": "".join(str(d) for d in digits)}

    def prompt(self, instance: dict) -> str:
        return ("Square every decimal digit of " + instance["number"] + " and add the squares together. "
                "Reply with the total alone.")

    def reference(self, instance: dict) -> str:
        return str(sum(int(c) ** 2 for c in instance["number"]))

    def score(self, instance: dict, response: str) -> float:
        words = response.strip().split()
        return 1.0 if words and words[-1].strip(".") == self.reference(instance) else 0.0
