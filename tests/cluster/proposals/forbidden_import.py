"""Imports os: L1 must refuse it before it runs."""
import os
import random


class Listing:
    name = "listing"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        return {"n": rng.randint(1, 9)}

    def prompt(self, instance: dict) -> str:
        return str(os.listdir("/"))

    def reference(self, instance: dict) -> str:
        return str(instance["n"])

    def score(self, instance: dict, response: str) -> float:
        return float(response.strip() == str(instance["n"]))
