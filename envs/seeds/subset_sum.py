"""subset_sum: find a subset of numbers with a given sum (any valid subset counts).

Task: given a numbered list of positive integers (repeats allowed) and a target,
pick a subset whose sum is exactly the target and answer with the 0-based
INDICES of the picked numbers. A solution is planted, but any valid subset
scores 1.

Difficulty d (an int; values below 1 count as 1): n = 4 + 2d numbers drawn
from 1..10+15d; the planted subset has 2..max(2, n // 2) elements. The target
is never equal to a single number of the list (resampled), so the empty list
and any one-index answer (e.g. "0" or "1") are invalid.

Answer format "final_line": the last non-empty line of the response,
"Answer: [i1, i2, ...]" (the "Answer:" prefix and the brackets are optional;
indices may be separated by commas and/or spaces; surrounding whitespace,
``*``/backticks and a trailing period are ignored). Valid iff every entry is
an integer index in 0..n-1, no index repeats, and the picked numbers sum to
the target. Score 1.0 if valid, else 0.0 (unparseable -> 0.0).
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


def _parse_int_list(text):
    s = _final_line(text)
    if s is None:
        return None
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    parts = [p for p in re.split(r"[\s,]+", s) if p]
    if not all(re.fullmatch(r"[+-]?[0-9]{1,18}", p) for p in parts):
        return None
    return [int(p) for p in parts]


class SubsetSum:
    name = "subset_sum"
    description = "Pick numbers from a list (by index) whose sum is exactly a target."
    answer_format = "final_line"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        d = max(1, int(difficulty))
        n = 4 + 2 * d
        for _ in range(100):
            values = [rng.randint(1, 10 + 15 * d) for _ in range(n)]
            subset = sorted(rng.sample(range(n), rng.randint(2, max(2, n // 2))))
            target = sum(values[i] for i in subset)
            if target not in values:
                break
        return {"values": values, "target": target, "solution": subset}

    def prompt(self, instance: dict) -> str:
        numbers = ", ".join(f"[{i}] {v}" for i, v in enumerate(instance["values"]))
        return (
            "Choose some of the numbers below (each at most once) so that the chosen numbers add "
            f"up to exactly {instance['target']}. Each number is shown with its 0-based index in "
            "square brackets; answer with the indices of the chosen numbers, not their values.\n\n"
            f"Numbers: {numbers}\nTarget: {instance['target']}\n\n"
            "You may reason step by step. End your response with a final line of the form\n"
            "Answer: [i1, i2, ...]\n"
            "listing the chosen indices (0-based) in square brackets, separated by commas.")

    def reference(self, instance: dict) -> str:
        return f"Answer: {list(instance['solution'])}"

    def score(self, instance: dict, response: str) -> float:
        indices, values = _parse_int_list(response), instance["values"]
        if indices is None or len(set(indices)) != len(indices):
            return 0.0
        if not all(0 <= i < len(values) for i in indices):
            return 0.0
        return 1.0 if sum(values[i] for i in indices) == instance["target"] else 0.0
