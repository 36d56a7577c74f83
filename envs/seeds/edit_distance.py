"""edit_distance: the Levenshtein distance between two random strings.

Task: given strings A and B over a small alphabet, report the minimum number of
single-character insertions, deletions and substitutions that turn A into B.
Cheap as code (an O(|A||B|) DP), error-prone to carry out by hand.

Difficulty d (an int; values below 1 count as 1): |A| = 3 + 2d and
|B| = |A| + r with r in {-1, 0, 1}; the alphabet is "abc" for d < 4, else
"abcd". Instances whose distance is below 2 are resampled, so the constant
answers 0 and 1 never score.

Answer format "final_line": the last non-empty line of the response,
"Answer: <integer>" (the "Answer:" prefix is optional and case-insensitive;
surrounding whitespace, ``*``/backticks and a trailing period are ignored).
Score: 1.0 iff that line is an integer equal to the distance, else 0.0; a
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


def _distance(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


class EditDistance:
    name = "edit_distance"
    description = "Compute the Levenshtein edit distance between two random strings."
    answer_format = "final_line"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        d = max(1, int(difficulty))
        alphabet = "abc" if d < 4 else "abcd"
        n = 3 + 2 * d
        for _ in range(100):
            a = "".join(rng.choice(alphabet) for _ in range(n))
            b = "".join(rng.choice(alphabet) for _ in range(n + rng.randint(-1, 1)))
            if _distance(a, b) >= 2:
                break
        return {"a": a, "b": b}

    def prompt(self, instance: dict) -> str:
        return (
            "Compute the Levenshtein (edit) distance between the strings A and B: the minimum "
            "number of single-character insertions, deletions and substitutions needed to turn "
            "A into B.\n\n"
            f"A = \"{instance['a']}\"\nB = \"{instance['b']}\"\n\n"
            "You may reason step by step. End your response with a final line of the form\n"
            "Answer: <integer>")

    def reference(self, instance: dict) -> str:
        return f"Answer: {_distance(instance['a'], instance['b'])}"

    def score(self, instance: dict, response: str) -> float:
        value = _parse_int(response)
        return 1.0 if value is not None and value == _distance(instance["a"], instance["b"]) else 0.0
