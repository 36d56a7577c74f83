"""graph_coloring: properly colour a graph with k colours (any valid colouring counts).

Task: given an undirected graph on vertices 0..n-1 as an edge list and a number
k, give each vertex a colour in 0..k-1 so that the two endpoints of every edge
get different colours. A k-colouring is planted, but any valid one scores 1.

Difficulty d (an int; values below 1 count as 1): n = 4 + 2d vertices;
k = 3 for d <= 4, else 4. The planted colouring uses every colour; the graph
has min(0.8 * k * n, 3/4 of the pairs the planted colouring allows) edges
drawn among those pairs (at least one edge, so a constant colouring is never
valid).

Answer format "final_line": the last non-empty line of the response,
"Answer: [c0, c1, ..., c(n-1)]" where c_i is the colour of vertex i (the
"Answer:" prefix and the brackets are optional; colours may be separated by
commas and/or spaces; surrounding whitespace, ``*``/backticks and a trailing
period are ignored). Valid iff there are exactly n integers, all in 0..k-1,
and no edge joins two vertices of the same colour. Score 1.0 if valid, else
0.0 (unparseable -> 0.0).
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


class GraphColoring:
    name = "graph_coloring"
    description = "Colour the vertices of a graph with k colours so that no edge joins equal colours."
    answer_format = "final_line"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        d = max(1, int(difficulty))
        n, k = 4 + 2 * d, 3 if d <= 4 else 4
        colours = [i % k for i in range(n)]
        rng.shuffle(colours)
        allowed = [[u, v] for u in range(n) for v in range(u + 1, n) if colours[u] != colours[v]]
        edges = sorted(rng.sample(allowed, max(1, min(3 * len(allowed) // 4, round(0.8 * k * n)))))
        return {"n": n, "k": k, "edges": edges, "solution": colours}

    def prompt(self, instance: dict) -> str:
        n, k = instance["n"], instance["k"]
        edges = ", ".join(f"{u}-{v}" for u, v in instance["edges"])
        return (
            f"An undirected graph has vertices 0 to {n - 1} and the edges listed below. Colour "
            f"every vertex with one of the colours 0 to {k - 1} so that the two endpoints of "
            "every edge have different colours.\n\n"
            f"Edges: {edges}\n\n"
            "You may reason step by step. End your response with a final line of the form\n"
            "Answer: [c0, c1, ...]\n"
            f"giving the colour of each vertex 0 to {n - 1} in order ({n} integers).")

    def reference(self, instance: dict) -> str:
        return f"Answer: {list(instance['solution'])}"

    def score(self, instance: dict, response: str) -> float:
        colours, n, k = _parse_int_list(response), instance["n"], instance["k"]
        if colours is None or len(colours) != n or not all(0 <= c < k for c in colours):
            return 0.0
        return 1.0 if all(colours[u] != colours[v] for u, v in instance["edges"]) else 0.0
