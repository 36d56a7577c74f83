"""sat3: find a satisfying assignment of a planted 3-SAT formula (any one counts).

Task: given a CNF formula over variables x1..xn whose clauses have three
literals each, written DIMACS-style (i means x_i, -i means NOT x_i), give a
truth assignment that satisfies every clause. An assignment is planted, but
any satisfying assignment scores 1.

Difficulty d (an int; values below 1 count as 1): n = 3 + 2d variables and
about 4.2 n clauses (near the hard ratio), each over three distinct variables
with random signs, kept only if the planted assignment satisfies it. If the
all-false or the all-true assignment would satisfy the formula, a clause is
added that rules it out, so no constant assignment is valid.

Answer format "final_line": the last non-empty line of the response,
"Answer: [v1, v2, ..., vn]" with v_i = 1 if x_i is true and 0 if false (the
"Answer:" prefix and the brackets are optional; values may be separated by
commas and/or spaces; surrounding whitespace, ``*``/backticks and a trailing
period are ignored). Valid iff there are exactly n values, each 0 or 1, and
every clause has a true literal. Score 1.0 if valid, else 0.0 (unparseable ->
0.0).
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


def _satisfies(values, clauses):
    """values[i] is 0/1 for x_(i+1)."""
    return all(any((values[abs(l) - 1] == 1) == (l > 0) for l in clause) for clause in clauses)


class Sat3:
    name = "sat3"
    description = "Find a truth assignment that satisfies a 3-SAT formula."
    answer_format = "final_line"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        d = max(1, int(difficulty))
        n = 3 + 2 * d
        planted = [0] * n
        while len(set(planted)) < 2:
            planted = [rng.randint(0, 1) for _ in range(n)]
        clauses = []
        while len(clauses) < round(4.2 * n):
            clause = [v if rng.random() < 0.5 else -v for v in rng.sample(range(1, n + 1), 3)]
            if _satisfies(planted, [clause]):
                clauses.append(clause)
        for bad in (0, 1):  # rule out the constant assignments all-false / all-true
            if _satisfies([bad] * n, clauses):
                keep = rng.choice([i + 1 for i in range(n) if planted[i] != bad])
                others = rng.sample([v for v in range(1, n + 1) if v != keep], 2)
                sign = 1 if bad == 0 else -1
                clauses.insert(rng.randrange(len(clauses) + 1), [sign * v for v in [keep] + others])
        return {"n": n, "clauses": clauses, "solution": planted}

    def prompt(self, instance: dict) -> str:
        n = instance["n"]
        clauses = "\n".join(" ".join(map(str, c)) for c in instance["clauses"])
        return (
            f"Find an assignment of true/false to the variables x1..x{n} that satisfies every "
            "clause below. Each line is one clause, the OR of its three literals: a number i "
            "stands for x_i and -i for NOT x_i; the formula is the AND of all clauses.\n\n"
            f"{clauses}\n\n"
            "You may reason step by step. End your response with a final line of the form\n"
            "Answer: [v1, v2, ...]\n"
            f"with {n} values, v_i = 1 if x_i is true and 0 if it is false.")

    def reference(self, instance: dict) -> str:
        return f"Answer: {list(instance['solution'])}"

    def score(self, instance: dict, response: str) -> float:
        values, n = _parse_int_list(response), instance["n"]
        if values is None or len(values) != n or not all(v in (0, 1) for v in values):
            return 0.0
        return 1.0 if _satisfies(values, instance["clauses"]) else 0.0
