"""lattice_paths: count monotone lattice paths around obstacles, modulo m.

Task: on an R x C grid ('.' free, '#' blocked) count the paths from the
top-left cell to the bottom-right cell that move only right or down one cell
at a time and never enter a blocked cell; report that count modulo m.
Both corner cells are always free.

Difficulty d (an int; values below 1 count as 1): R = 2 + d rows and
C = 2 + d + r columns (r in {0, 1}); every other cell is blocked with
probability 0.2; m is drawn from 100..1000, so the modulus starts to matter
around d = 4. Instances whose answer (count mod m) is below 2 are resampled,
so the constant answers 0 and 1 never score.

Answer format "boxed": the integer inside the last \\boxed{...} of the
response (whitespace inside the box is ignored). Score: 1.0 iff it equals
the count modulo m, else 0.0; a response with no parseable box scores 0.0.
"""
import random
import re


def _parse_boxed_int(text):
    if not isinstance(text, str):
        return None
    boxes = re.findall(r"\\boxed\s*\{([^{}]*)\}", text)
    s = boxes[-1].strip() if boxes else ""
    return int(s) if re.fullmatch(r"[+-]?[0-9]{1,18}", s) else None


def _count(grid):
    cols = len(grid[0])
    ways = [0] * cols  # ways[c] = paths reaching (current row, c)
    ways[0] = 1
    for row in grid:
        for c in range(cols):
            if row[c] == "#":
                ways[c] = 0
            elif c > 0:
                ways[c] += ways[c - 1]
    return ways[-1]


class LatticePaths:
    name = "lattice_paths"
    description = "Count right/down lattice paths through a grid with obstacles, modulo m."
    answer_format = "boxed"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        d = max(1, int(difficulty))
        rows, cols = 2 + d, 2 + d + rng.randint(0, 1)
        for _ in range(200):
            cells = [["#" if rng.random() < 0.2 else "." for _ in range(cols)] for _ in range(rows)]
            cells[0][0] = cells[-1][-1] = "."
            grid = ["".join(row) for row in cells]
            modulus = rng.randint(100, 1000)
            if _count(grid) % modulus >= 2:
                break
        return {"grid": grid, "modulus": modulus}

    def prompt(self, instance: dict) -> str:
        grid, m = instance["grid"], instance["modulus"]
        return (
            f"The grid below has {len(grid)} rows and {len(grid[0])} columns; '.' is a free cell "
            "and '#' is a blocked cell. A path starts at the top-left cell, ends at the "
            "bottom-right cell, moves one cell right or one cell down at each step, and never "
            f"enters a blocked cell. Count such paths and give the count modulo {m}.\n\n"
            + "\n".join(grid) + "\n\n"
            "You may reason step by step. Put the final answer (an integer between 0 and "
            f"{m - 1}) in \\boxed{{...}} at the end of your response.")

    def reference(self, instance: dict) -> str:
        return f"\\boxed{{{_count(instance['grid']) % instance['modulus']}}}"

    def score(self, instance: dict, response: str) -> float:
        value = _parse_boxed_int(response)
        return 1.0 if value is not None and value == _count(instance["grid"]) % instance["modulus"] else 0.0
