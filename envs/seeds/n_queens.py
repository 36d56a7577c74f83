"""n_queens: complete an N-queens placement around pre-placed queens (any valid one counts).

Task: place N queens on an N x N board so that no two attack each other (no
two share a row, column or diagonal), keeping the queens already placed.
Rows and columns are numbered from 0. The pre-placed queens come from a
planted full solution, but any valid completion scores 1.

Difficulty d (an int; values below 1 count as 1): N = 4 + d; max(1, N // 3)
queens are pre-placed in random rows. The planted solution comes from a
randomised min-conflicts search with restarts (fast even for large N).

Answer format "final_line": the last non-empty line of the response,
"Answer: [c0, c1, ..., c(N-1)]" where c_r is the column of the queen in row r
(the "Answer:" prefix and the brackets are optional; numbers may be separated
by commas and/or spaces; surrounding whitespace, ``*``/backticks and a
trailing period are ignored). Valid iff there are exactly N integers in
0..N-1, all distinct, no two queens share a diagonal, and every pre-placed
queen (r, c) has c_r == c. Score 1.0 if valid, else 0.0 (unparseable -> 0.0).
"""
import random
import re
from collections import Counter


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


def _random_solution(rng, n):
    """Min-conflicts local search from a random start, restarted when it stalls."""
    while True:
        cols = [rng.randrange(n) for _ in range(n)]
        for _ in range(50 * n):
            col = Counter(cols)
            up = Counter(r - c for r, c in enumerate(cols))
            down = Counter(r + c for r, c in enumerate(cols))
            bad = [r for r, c in enumerate(cols) if col[c] + up[r - c] + down[r + c] > 3]
            if not bad:
                return cols
            r = rng.choice(bad)
            cost = [col[c] + up[r - c] + down[r + c] - 3 * (c == cols[r]) for c in range(n)]
            cols[r] = rng.choice([c for c in range(n) if cost[c] == min(cost)])


class NQueens:
    name = "n_queens"
    description = "Complete an N-queens placement that keeps some pre-placed queens."
    answer_format = "final_line"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        n = 4 + max(1, int(difficulty))
        solution = _random_solution(rng, n)
        given = sorted([r, solution[r]] for r in rng.sample(range(n), max(1, n // 3)))
        return {"n": n, "given": given, "solution": solution}

    def prompt(self, instance: dict) -> str:
        n, given = instance["n"], {r: c for r, c in instance["given"]}
        board = "\n".join("".join("Q" if given.get(r) == c else "." for c in range(n)) for r in range(n))
        placed = ", ".join(f"(row {r}, column {c})" for r, c in instance["given"])
        return (
            f"Place {n} queens on a {n} x {n} chessboard so that no two queens attack each other "
            "(no two in the same row, column or diagonal). Rows and columns are numbered from 0; "
            f"row 0 is the top row. Some queens are already placed and must stay: {placed}.\n\n"
            f"{board}\n\n"
            "You may reason step by step. End your response with a final line of the form\n"
            "Answer: [c0, c1, ...]\n"
            f"giving, for each row 0 to {n - 1} in order, the column of its queen ({n} integers).")

    def reference(self, instance: dict) -> str:
        return f"Answer: {list(instance['solution'])}"

    def score(self, instance: dict, response: str) -> float:
        cols, n = _parse_int_list(response), instance["n"]
        if cols is None or len(cols) != n or not all(0 <= c < n for c in cols) or len(set(cols)) != n:
            return 0.0
        if len({r + c for r, c in enumerate(cols)}) != n or len({r - c for r, c in enumerate(cols)}) != n:
            return 0.0
        return 1.0 if all(cols[r] == c for r, c in instance["given"]) else 0.0
