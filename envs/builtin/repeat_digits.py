"""repeat_digits: the toy environment used by the skeleton's end-to-end run.

Instance: {"digit": d, "length": L} with d in 0-9 and L = difficulty + 2
(difficulty below 0 counts as 0, so difficulty 1 gives L = 3).
Prompt: "Repeat the digit {d} exactly {L} times:"; reference: str(d) * L.
Score: strip leading whitespace from the response and compare its first L
characters with the digit: a position holding the digit earns 1, a position
holding another digit earns 0.25 (shaping: "write digits" is the first thing
to learn), anything else 0; score = sum / L. Missing characters count as
wrong, so an empty response scores 0, and only the reference scores 1.

The partial credit gives a dense reward that a randomly initialised
character-level tiny model learns within a few dozen RL steps.

Self-contained on purpose (stdlib only, no project imports): environment
files are loaded from their source text inside a worker process.
"""
import random


class RepeatDigits:
    name = "repeat_digits"
    description = "Repeat a single digit a given number of times."
    answer_format = "raw"  # scored on the start of the raw response

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        return {"digit": rng.randrange(10), "length": max(0, int(difficulty)) + 2}

    def prompt(self, instance: dict) -> str:
        return f"Repeat the digit {instance['digit']} exactly {instance['length']} times:"

    def reference(self, instance: dict) -> str:
        return str(instance["digit"]) * instance["length"]

    def score(self, instance: dict, response: str) -> float:
        digit, length = str(instance["digit"]), instance["length"]
        head = response.lstrip()[:length]
        return sum(1.0 if ch == digit else 0.25 if ch.isdigit() else 0.0 for ch in head) / length
