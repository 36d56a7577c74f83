"""longest_increasing_subsequence: length of the longest strictly increasing subsequence.

Task: given a list of integers (repeats allowed), report the length of its
longest strictly increasing subsequence (elements kept in their original order,
not necessarily contiguous; equal neighbours do not count as increasing).

Difficulty d (an int; values below 1 count as 1): the list has n = 4 + 3d
elements drawn uniformly from 1..max(9, 2n), so repeats occur. Instances
whose answer is below 2 are resampled, so the constant answers 0 and 1 never
score.

Answer format "final_line": the last non-empty line of the response,
"Answer: <integer>" (the "Answer:" prefix is optional and case-insensitive;
surrounding whitespace, ``*``/backticks and a trailing period are ignored).
Score: 1.0 iff that line is an integer equal to the LIS length, else 0.0; a
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


def _lis(values):
    best = []  # best[i] = length of the longest strictly increasing run ending at i
    for i, v in enumerate(values):
        best.append(1 + max([best[j] for j in range(i) if values[j] < v], default=0))
    return max(best, default=0)


class LongestIncreasingSubsequence:
    name = "longest_increasing_subsequence"
    description = "Find the length of the longest strictly increasing subsequence of a list of integers."
    answer_format = "final_line"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        d = max(1, int(difficulty))
        n = 4 + 3 * d
        hi = max(9, 2 * n)
        for _ in range(100):
            values = [rng.randint(1, hi) for _ in range(n)]
            if _lis(values) >= 2:
                break
        return {"values": values}

    def prompt(self, instance: dict) -> str:
        return (
            "Find the length of the longest strictly increasing subsequence of the list below. "
            "A subsequence keeps the original order but may skip elements; strictly increasing "
            "means every element is larger than the one before it (equal values do not count).\n\n"
            f"List: {', '.join(map(str, instance['values']))}\n\n"
            "You may reason step by step. End your response with a final line of the form\n"
            "Answer: <integer>")

    def reference(self, instance: dict) -> str:
        return f"Answer: {_lis(instance['values'])}"

    def score(self, instance: dict, response: str) -> float:
        value = _parse_int(response)
        return 1.0 if value is not None and value == _lis(instance["values"]) else 0.0
