"""knapsack: the optimum value of a 0/1 knapsack.

Task: given items with integer weights and values and a capacity, report the
largest total value of a set of items (each used at most once) whose total
weight does not exceed the capacity.

Difficulty d (an int; values below 1 count as 1): n = 3 + d items, weights in
1..3+2d, values in 2..5+5d, capacity between 35% and 60% of the total weight
(at least the heaviest item, always below the total, so taking everything is
never allowed). Every item fits alone and values are >= 2, so the optimum is
>= 2 and the constant answers 0 and 1 never score.

Answer format "final_line": the last non-empty line of the response,
"Answer: <integer>" (the "Answer:" prefix is optional and case-insensitive;
surrounding whitespace, ``*``/backticks and a trailing period are ignored).
Score: 1.0 iff that line is an integer equal to the optimum, else 0.0; a
response that cannot be parsed scores 0.0.
"""
import random
import re


def _final_line(text):
    if not isinstance(text, str):
        return None
    for line in reversed(text.splitlines()):
        line = line.strip().strip("*` ")
        if line:
            line = re.sub(r"^answer\s*:", "", line, flags=re.IGNORECASE)
            return line.strip().strip("*` ").rstrip(".").strip()
    return None


def _parse_int(text):
    s = _final_line(text)
    return int(s) if s is not None and re.fullmatch(r"[+-]?[0-9]{1,18}", s) else None


def _optimum(weights, values, capacity):
    best = [0] * (capacity + 1)  # best[c] = max value with total weight <= c
    for w, v in zip(weights, values):
        for c in range(capacity, w - 1, -1):
            best[c] = max(best[c], best[c - w] + v)
    return best[capacity]


class Knapsack:
    name = "knapsack"
    description = "Find the optimum total value of a 0/1 knapsack with a weight capacity."
    answer_format = "final_line"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        d = max(1, int(difficulty))
        n = 3 + d
        weights = [rng.randint(1, 3 + 2 * d) for _ in range(n)]
        values = [rng.randint(2, 5 + 5 * d) for _ in range(n)]
        total = sum(weights)
        capacity = round(total * rng.uniform(0.35, 0.6))
        capacity = min(max(capacity, max(weights)), total - 1)
        return {"weights": weights, "values": values, "capacity": capacity}

    def prompt(self, instance: dict) -> str:
        items = "\n".join(f"item {i + 1}: weight {w}, value {v}" for i, (w, v) in
                          enumerate(zip(instance["weights"], instance["values"])))
        return (
            "0/1 knapsack: choose a set of the items below (each item at most once) whose total "
            f"weight is at most {instance['capacity']}, so that the total value is as large as "
            "possible. Report that largest total value.\n\n"
            f"Capacity: {instance['capacity']}\n{items}\n\n"
            "You may reason step by step. End your response with a final line of the form\n"
            "Answer: <integer>")

    def reference(self, instance: dict) -> str:
        return f"Answer: {_optimum(instance['weights'], instance['values'], instance['capacity'])}"

    def score(self, instance: dict, response: str) -> float:
        value = _parse_int(response)
        best = _optimum(instance["weights"], instance["values"], instance["capacity"])
        return 1.0 if value is not None and value == best else 0.0
