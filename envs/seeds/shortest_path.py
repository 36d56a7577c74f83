"""shortest_path: the shortest distance in a weighted directed graph.

Task: given a directed graph as an edge list "u -> v (weight w)" with positive
integer weights, a source s and a target t, report the length of the shortest
directed path from s to t. Edges are one-way: u -> v does not allow v -> u.

Difficulty d (an int; values below 1 count as 1): n = 4 + 2d nodes numbered
0..n-1 and about 2n + d distinct edges with weights in 1..4+2d. A random path
from s to t is planted first, so t is always reachable (the planted path need
not be the shortest). Instances whose distance is below 2 are resampled, so
the constant answers 0 and 1 never score.

Answer format "final_line": the last non-empty line of the response,
"Answer: <integer>" (the "Answer:" prefix is optional and case-insensitive;
surrounding whitespace, ``*``/backticks and a trailing period are ignored).
Score: 1.0 iff that line is an integer equal to the shortest distance, else
0.0; a response that cannot be parsed scores 0.0.
"""
import heapq
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


def _dijkstra(n, edges, source, target):
    adj = [[] for _ in range(n)]
    for u, v, w in edges:
        adj[u].append((v, w))
    dist, heap = {source: 0}, [(0, source)]
    while heap:
        du, u = heapq.heappop(heap)
        if u == target:
            return du
        if du > dist[u]:
            continue
        for v, w in adj[u]:
            if du + w < dist.get(v, du + w + 1):
                dist[v] = du + w
                heapq.heappush(heap, (du + w, v))
    return None


class ShortestPath:
    name = "shortest_path"
    description = "Find the shortest distance between two nodes of a weighted directed graph."
    answer_format = "final_line"

    def sample(self, rng: random.Random, difficulty: int) -> dict:
        d = max(1, int(difficulty))
        n, wmax = 4 + 2 * d, 4 + 2 * d
        for _ in range(100):
            source, target = rng.sample(range(n), 2)
            middle = rng.sample([x for x in range(n) if x not in (source, target)], rng.randint(1, n // 2))
            path = [source] + middle + [target]
            weights = {(u, v): rng.randint(1, wmax) for u, v in zip(path, path[1:])}
            while len(weights) < 2 * n + d:
                u, v = rng.sample(range(n), 2)
                weights.setdefault((u, v), rng.randint(1, wmax))
            edges = [[u, v, w] for (u, v), w in weights.items()]
            rng.shuffle(edges)
            if _dijkstra(n, edges, source, target) >= 2:
                break
        return {"n": n, "edges": edges, "source": source, "target": target}

    def prompt(self, instance: dict) -> str:
        edges = "\n".join(f"{u} -> {v} (weight {w})" for u, v, w in instance["edges"])
        return (
            f"A directed graph has nodes 0 to {instance['n'] - 1} and the one-way edges below "
            "(u -> v can only be travelled from u to v). The length of a path is the sum of its "
            f"edge weights. Find the length of the shortest path from node {instance['source']} "
            f"to node {instance['target']}.\n\nEdges:\n{edges}\n\n"
            "You may reason step by step. End your response with a final line of the form\n"
            "Answer: <integer>")

    def reference(self, instance: dict) -> str:
        i = instance
        return f"Answer: {_dijkstra(i['n'], i['edges'], i['source'], i['target'])}"

    def score(self, instance: dict, response: str) -> float:
        i, value = instance, _parse_int(response)
        return 1.0 if value is not None and value == _dijkstra(
            i["n"], i["edges"], i["source"], i["target"]) else 0.0
