"""latin_square: complete a partially filled Latin square (any valid completion counts).

Task: an n x n grid holds the numbers 1..n with some cells blank ('.'); fill
the blanks so that every row and every column contains each of 1..n exactly
once. The grid is cut from a planted Latin square, but any completion that
keeps every given cell scores 1.

Difficulty d (an int; values below 1 count as 1): n = 3 + (d - 1) // 2
(3, 3, 4, 4, 5, 5, ...); the fraction of blank cells is 0.3 + 0.05 (d - 1),
capped at 0.65, and at least one cell is blank. The planted square is a
cyclic square with randomly permuted rows, columns and symbols.

Answer format "fenced": the last ``` fenced block of the response (a language
tag on the opening line is ignored) holding the completed grid, one row per
line, n integers per row separated by spaces and/or commas; blank lines in
the block and surrounding whitespace are ignored. Valid iff it has exactly n
rows of n integers in 1..n, every row and column holds each number once, and
every given cell keeps its value. Score 1.0 if valid, else 0.0 (no fenced
block or unparseable -> 0.0).
"""
import random
import re


def _parse_grid(text):
    if not isinstance(text, str):
        return None
    blocks = re.findall(r"```[^\n`]*\n(.*?)```", text, flags=re.DOTALL)
    if not blocks:
        return None
    rows = []
    for line in blocks[-1].splitlines():
        parts = [p for p in re.split(r"[\s,]+", line.strip()) if p]
        if parts:
            if not all(re.fullmatch(r"[0-9]{1,18}", p) for p in parts):
                return None
            rows.append([int(p) for p in parts])
    return rows


class LatinSquare:
    name = "latin_square"
    description = "Fill the blank cells of a partial Latin square."
    answer_format = "fenced"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        d = max(1, int(difficulty))
        n = 3 + (d - 1) // 2
        rows, cols, symbols = list(range(n)), list(range(n)), list(range(1, n + 1))
        for perm in (rows, cols, symbols):
            rng.shuffle(perm)
        solution = [[symbols[(rows[r] + cols[c]) % n] for c in range(n)] for r in range(n)]
        blanks = max(1, round(min(0.65, 0.3 + 0.05 * (d - 1)) * n * n))
        hidden = set(rng.sample(range(n * n), blanks))
        grid = [[0 if r * n + c in hidden else solution[r][c] for c in range(n)] for r in range(n)]
        return {"n": n, "grid": grid, "solution": solution}

    def prompt(self, instance: dict) -> str:
        n = instance["n"]
        grid = "\n".join(" ".join(str(v) if v else "." for v in row) for row in instance["grid"])
        return (
            f"Complete this {n} x {n} Latin square: replace every '.' with a number from 1 to {n} "
            f"so that each row and each column contains every number from 1 to {n} exactly once. "
            "Keep the given numbers where they are.\n\n"
            f"{grid}\n\n"
            "You may reason step by step. End your response with the completed grid in a fenced "
            f"code block (```), one row per line, {n} numbers per row separated by spaces:\n"
            "```\n<row 1>\n<row 2>\n...\n```")

    def reference(self, instance: dict) -> str:
        return "```\n" + "\n".join(" ".join(map(str, row)) for row in instance["solution"]) + "\n```"

    def score(self, instance: dict, response: str) -> float:
        rows, n = _parse_grid(response), instance["n"]
        if rows is None or len(rows) != n or any(len(row) != n for row in rows):
            return 0.0
        full = set(range(1, n + 1))
        if any(set(row) != full for row in rows) or any({row[c] for row in rows} != full for c in range(n)):
            return 0.0
        givens = instance["grid"]
        return 1.0 if all(givens[r][c] in (0, rows[r][c]) for r in range(n) for c in range(n)) else 0.0
