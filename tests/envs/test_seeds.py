"""The ten seed environments in envs/seeds/, loaded from source text exactly as the sandbox does.

Independent brute-force checkers below cross-check the environments' own
oracles (computed answers for the solve-type envs, validity for the
verify-type envs) on small instances.
"""
import ast
import functools
import itertools
import json
import random
import string
from pathlib import Path

import pytest

from envs.protocol import load_environment

SEED_DIR = Path(__file__).resolve().parents[2] / "envs" / "seeds"
COMPUTE = ["edit_distance", "longest_increasing_subsequence", "knapsack", "shortest_path", "lattice_paths"]
VERIFY = ["subset_sum", "graph_coloring", "sat3", "latin_square", "n_queens"]
NAMES = COMPUTE + VERIFY
SEEDS = range(30)
DIFFICULTIES = range(1, 7)
FORMAT_MARK = {"final_line": "Answer:", "boxed": "\\boxed", "fenced": "```"}

SIZE = {  # a size measure of an instance, expected to grow with difficulty
    "edit_distance": lambda i: len(i["a"]) + len(i["b"]),
    "longest_increasing_subsequence": lambda i: len(i["values"]),
    "knapsack": lambda i: len(i["weights"]),
    "shortest_path": lambda i: i["n"] + len(i["edges"]),
    "lattice_paths": lambda i: len(i["grid"]) * len(i["grid"][0]),
    "subset_sum": lambda i: len(i["values"]),
    "graph_coloring": lambda i: i["n"] + len(i["edges"]),
    "sat3": lambda i: len(i["clauses"]),
    "latin_square": lambda i: sum(v == 0 for row in i["grid"] for v in row),
    "n_queens": lambda i: i["n"],
}


@functools.lru_cache(maxsize=None)
def load(name):
    path = SEED_DIR / f"{name}.py"
    return load_environment(path.read_text(encoding="utf-8"), filename=path.name)


@functools.lru_cache(maxsize=None)
def _instances(name):
    env = load(name)
    return [(d, s, json.loads(json.dumps(env.sample(random.Random(s), d))))
            for d in DIFFICULTIES for s in SEEDS]


def instances(name, difficulties=DIFFICULTIES):
    """JSON round-tripped instances (tuples would have become lists), as the trainer sees them."""
    return [(d, s, inst) for d, s, inst in _instances(name) if d in difficulties]


def score(env, inst, response):
    value = env.score(inst, response)
    assert isinstance(value, float) and 0.0 <= value <= 1.0, (response, value)
    return value


def answer(env, values):
    """Format a list answer the way the prompt asks."""
    return "Answer: " + json.dumps(values)


def garbage(n=40):
    rng = random.Random(1234)
    return ["".join(rng.choice(string.printable) for _ in range(rng.randint(1, 60))) for _ in range(n)]


# --- shape, determinism, self-consistency -------------------------------------------------------

def test_all_seed_files_present():
    files = {p.stem for p in SEED_DIR.glob("*.py") if not p.stem.startswith("_")}
    assert files == set(NAMES)
    assert (SEED_DIR / "__init__.py").exists()


@pytest.mark.parametrize("name", NAMES)
def test_attributes_and_stdlib_only(name):
    env = load(name)
    assert env.name == name
    assert isinstance(env.description, str) and env.description.strip().endswith(".")
    assert env.answer_format in FORMAT_MARK
    source = (SEED_DIR / f"{name}.py").read_text()
    assert source.startswith('"""')  # documented
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"random", "re", "json", "math", "itertools", "heapq", "collections", "functools"}


@pytest.mark.parametrize("name", NAMES)
def test_reference_scores_one(name):
    env = load(name)
    for d, s, inst in instances(name):
        original = env.sample(random.Random(s), d)
        assert score(env, original, env.reference(original)) == 1.0
        assert score(env, inst, env.reference(inst)) == 1.0, (d, s)
        ref = env.reference(inst)
        # Tolerance: reasoning before the answer, surrounding whitespace.
        assert score(env, inst, f"Let me think.\nStep 1: ...\n\n  {ref}  \n\n") == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_per_seed(name):
    env = load(name)
    for d in (1, 4):
        assert env.sample(random.Random(5), d) == env.sample(random.Random(5), d)
        assert len({json.dumps(env.sample(random.Random(s), d), sort_keys=True) for s in range(10)}) > 1
    for low in (0, -3):  # difficulty below 1 counts as 1
        assert env.sample(random.Random(9), low) == env.sample(random.Random(9), 1)


@pytest.mark.parametrize("name", NAMES)
def test_prompt_mentions_answer_format(name):
    env = load(name)
    for _, _, inst in instances(name, (1, 5)):
        text = env.prompt(inst)
        assert isinstance(text, str) and FORMAT_MARK[env.answer_format] in text


@pytest.mark.parametrize("name", NAMES)
def test_difficulty_grows_instance_size(name):
    def mean(d):
        return sum(SIZE[name](i) for _, _, i in instances(name, (d,))) / len(SEEDS)
    assert mean(6) >= 1.5 * mean(1), (mean(1), mean(6))
    assert mean(1) <= mean(3) <= mean(6)


@pytest.mark.parametrize("name", NAMES)
def test_sample_is_fast_at_high_difficulty(name):
    import time
    env = load(name)
    for s in range(5):
        start = time.perf_counter()
        inst = env.sample(random.Random(s), 10)
        assert score(env, inst, env.reference(inst)) == 1.0
        assert time.perf_counter() - start < 0.2  # budget 50 ms; slack for slow CI


# --- not trivially gameable ---------------------------------------------------------------------

CONSTANTS = ["", " ", "\n\n\t", "0", "1", "[]", "yes", "Answer: 0", "Answer: 1", "Answer: []",
             "\\boxed{0}", "\\boxed{1}", "```\n0\n```", "```\n1\n```", "Answer: yes"]


@pytest.mark.parametrize("name", NAMES)
def test_empty_constant_and_garbage_score_zero(name):
    env = load(name)
    junk = garbage()
    for _, _, inst in instances(name):
        for response in CONSTANTS + junk:
            assert score(env, inst, response) == 0.0, repr(response)


def _constant_answers(name, inst):
    """Answers of the right shape that ignore the instance."""
    if name == "subset_sum":
        n = len(inst["values"])
        return [answer(None, list(range(n))), answer(None, [0]), answer(None, [1])]
    if name in ("graph_coloring", "sat3", "n_queens"):
        n, top = inst["n"], inst.get("k", 2)
        out = [answer(None, [c] * n) for c in range(top)]
        if name == "n_queens":
            out += [answer(None, list(range(n))), answer(None, list(range(n))[::-1])]
        return out
    if name == "latin_square":
        n = inst["n"]
        filled = [[v or 1 for v in row] for row in inst["grid"]]
        return ["```\n" + "\n".join(" ".join(map(str, r)) for r in rows) + "\n```"
                for rows in ([[1] * n] * n, inst["grid"], filled)]
    return []


@pytest.mark.parametrize("name", VERIFY)
def test_constant_shaped_answers_invalid(name):
    env = load(name)
    for _, _, inst in instances(name):
        for response in _constant_answers(name, inst):
            assert score(env, inst, response) == 0.0, response


MALFORMED_LISTS = ["Answer: [1, 2", "Answer: [a, b]", "Answer: [1.5, 2]", "Answer: [[0, 1]]",
                   "Answer: " + "9" * 5000, "Answer: [-1]", "Answer: {0: 1}", "Answer: none"]


@pytest.mark.parametrize("name", NAMES)
def test_malformed_answers_score_zero_without_raising(name):
    env = load(name)
    for _, _, inst in instances(name, (1, 3)):
        ref = env.reference(inst)
        bad = MALFORMED_LISTS + [ref.replace("1", "one"), ref.strip("`").replace("\\boxed", "\\box")]
        if env.answer_format == "final_line":
            bad += [ref + "x", "x" + ref, ref + "\nThat is my answer."]
        if name in VERIFY and env.answer_format == "final_line":
            values = json.loads(ref.split(":", 1)[1])
            bad += [answer(env, values[:-1]), answer(env, values + [0]), answer(env, values + values),
                    answer(env, [v + 10 ** 6 for v in values]), answer(env, [-1] + values[1:]),
                    answer(env, [str(v) for v in values]), answer(env, [v + 0.5 for v in values])]
        if name == "latin_square":
            rows = ref.strip("`\n").splitlines()
            bad += ["```\n" + "\n".join(rows[:-1]) + "\n```",                      # missing row
                    "```\n" + "\n".join(r + " 1" for r in rows) + "\n```",          # long rows
                    "```\n" + "\n".join(rows).replace("1", "0") + "\n```",        # out of range
                    "```\n" + "\n".join(rows).replace("1", "x") + "\n```",        # non-integer
                    "\n".join(rows),                                             # no fence
                    "```\n" + "\n".join(rows)]                                   # unclosed fence
        if name == "lattice_paths":
            bad += ["\\boxed{}", "\\boxed{x}", "\\boxed{1.0}", ref.replace("\\boxed{", "\\boxed{-")]
        for response in bad:
            if response.strip() != ref.strip():
                assert score(env, inst, response) == 0.0, response


# --- solve-type envs: the computed answer is right and nothing else is -------------------------

def _brute_edit(a, b):
    @functools.lru_cache(maxsize=None)
    def go(i, j):
        if i == len(a) or j == len(b):
            return len(a) - i + len(b) - j
        return min(go(i + 1, j) + 1, go(i, j + 1) + 1, go(i + 1, j + 1) + (a[i] != b[j]))
    return go(0, 0)


def _brute_lis(values):
    return max(k for k in range(len(values) + 1) for c in itertools.combinations(values, k)
               if all(x < y for x, y in zip(c, c[1:])))


def _brute_knapsack(inst):
    items = list(zip(inst["weights"], inst["values"]))
    return max(sum(v for _, v in c) for k in range(len(items) + 1) for c in itertools.combinations(items, k)
               if sum(w for w, _ in c) <= inst["capacity"])


def _bellman_ford(inst):
    dist = {inst["source"]: 0}
    for _ in range(inst["n"]):
        for u, v, w in inst["edges"]:
            if u in dist and dist[u] + w < dist.get(v, float("inf")):
                dist[v] = dist[u] + w
    return dist[inst["target"]]


def _brute_paths(inst):
    grid = inst["grid"]

    def walk(r, c):
        if r >= len(grid) or c >= len(grid[0]) or grid[r][c] == "#":
            return 0
        if (r, c) == (len(grid) - 1, len(grid[0]) - 1):
            return 1
        return walk(r + 1, c) + walk(r, c + 1)
    return walk(0, 0) % inst["modulus"]


BRUTE = {"edit_distance": lambda i: _brute_edit(i["a"], i["b"]),
         "longest_increasing_subsequence": lambda i: _brute_lis(i["values"]),
         "knapsack": _brute_knapsack, "shortest_path": _bellman_ford, "lattice_paths": _brute_paths}


def _int_answer(env, value):
    return f"\\boxed{{{value}}}" if env.answer_format == "boxed" else f"Answer: {value}"


@pytest.mark.parametrize("name", COMPUTE)
def test_compute_reference_matches_brute_force(name):
    env = load(name)
    for _, _, inst in instances(name, (1, 2)):
        truth = BRUTE[name](inst)
        assert truth >= 2  # so the constant answers 0 and 1 are wrong
        assert score(env, inst, _int_answer(env, truth)) == 1.0
        assert env.reference(inst) == _int_answer(env, truth)


@pytest.mark.parametrize("name", COMPUTE)
def test_compute_only_exact_value_scores(name):
    env = load(name)
    for _, _, inst in instances(name, (1, 4, 6)):
        ref = env.reference(inst)
        value = int(ref.strip("\\boxed{}").split(":")[-1])
        for wrong in (value - 1, value + 1, value * 2, -value):
            assert score(env, inst, _int_answer(env, wrong)) == 0.0
        variants = [f"{value}", f"  {value}  ", f"answer: {value}", f"**Answer:** {value}", f"Answer: {value}."]
        if env.answer_format == "boxed":
            variants = [f"\\boxed{{ {value} }}", f"so the count is $\\boxed{{{value}}}$.",
                        f"\\boxed{{{value + 1}}} no wait \\boxed{{{value}}}"]
        for text in variants:
            assert score(env, inst, text) == 1.0, text


# --- verify-type envs: any valid answer counts, a corrupted one does not ------------------------

def _values(ref):
    return json.loads(ref.split(":", 1)[1])


def test_subset_sum_accepts_any_valid_subset():
    env, others = load("subset_sum"), 0
    for _, _, inst in instances("subset_sum", (1, 2)):
        vals, planted = inst["values"], _values(env.reference(inst))
        assert sum(vals[i] for i in planted) == inst["target"] > 0
        assert score(env, inst, answer(env, planted[::-1])) == 1.0  # order does not matter
        assert score(env, inst, " ".join(map(str, planted))) == 1.0  # bare, space-separated
        for k in range(len(vals) + 1):
            for c in itertools.combinations(range(len(vals)), k):
                valid = sum(vals[i] for i in c) == inst["target"]
                assert score(env, inst, answer(env, list(c))) == float(valid)
                others += valid and sorted(c) != sorted(planted)
    assert others > 0


def test_subset_sum_corrupted_reference_scores_zero():
    env = load("subset_sum")
    for _, _, inst in instances("subset_sum"):
        vals, planted = inst["values"], _values(env.reference(inst))
        assert score(env, inst, answer(env, planted[1:])) == 0.0  # dropped one
        assert score(env, inst, answer(env, planted + planted[:1])) == 0.0  # repeated index
        assert score(env, inst, answer(env, planted[:-1] + [len(vals)])) == 0.0  # out of range
        swap = [i for i in range(len(vals)) if i not in planted and vals[i] != vals[planted[0]]]
        if swap:
            assert score(env, inst, answer(env, [swap[0]] + planted[1:])) == 0.0


def test_graph_coloring_accepts_renamed_colours_and_rejects_conflicts():
    env = load("graph_coloring")
    for _, s, inst in instances("graph_coloring"):
        colours, k = _values(env.reference(inst)), inst["k"]
        assert inst["edges"] and len(set(colours)) == k
        perm = list(range(k))
        random.Random(s).shuffle(perm)
        perm = perm if perm != list(range(k)) else perm[1:] + perm[:1]
        renamed = [perm[c] for c in colours]
        assert renamed != colours and score(env, inst, answer(env, renamed)) == 1.0
        u, v = inst["edges"][s % len(inst["edges"])]
        broken = list(colours)
        broken[u] = broken[v]
        assert score(env, inst, answer(env, broken)) == 0.0
        # Agrees with an independent check on every single-vertex recolouring.
        for x in range(inst["n"]):
            for c in range(k):
                cand = colours[:x] + [c] + colours[x + 1:]
                valid = all(cand[a] != cand[b] for a, b in inst["edges"])
                assert score(env, inst, answer(env, cand)) == float(valid)


def _sat(values, clauses):
    return all(any(values[abs(l) - 1] == (1 if l > 0 else 0) for l in c) for c in clauses)


def test_sat3_accepts_any_satisfying_assignment():
    env, others = load("sat3"), 0
    for _, _, inst in instances("sat3", (1, 2)):
        n, planted = inst["n"], _values(env.reference(inst))
        assert all(len(c) == 3 and len({abs(l) for l in c}) == 3 and all(1 <= abs(l) <= n for l in c)
                   for c in inst["clauses"])
        for bits in itertools.product((0, 1), repeat=n):
            valid = _sat(bits, inst["clauses"])
            assert score(env, inst, answer(env, list(bits))) == float(valid)
            others += valid and list(bits) != planted
    assert others > 0


def test_sat3_corrupted_reference_scores_zero():
    env, broken = load("sat3"), 0
    for _, _, inst in instances("sat3"):
        planted = _values(env.reference(inst))
        assert score(env, inst, answer(env, [1 - v for v in planted])) == float(
            _sat([1 - v for v in planted], inst["clauses"]))
        for i in range(inst["n"]):
            flipped = planted[:i] + [1 - planted[i]] + planted[i + 1:]
            valid = _sat(flipped, inst["clauses"])
            assert score(env, inst, answer(env, flipped)) == float(valid)
            broken += not valid
        assert score(env, inst, answer(env, planted[:-1] + [2])) == 0.0
    assert broken > 0


def _latin_completions(inst, limit=2):
    n, grid, out = inst["n"], [list(r) for r in inst["grid"]], []

    def fill(pos):
        if len(out) >= limit:
            return
        if pos == n * n:
            out.append([list(r) for r in grid])
            return
        r, c = divmod(pos, n)
        if grid[r][c]:
            return fill(pos + 1)
        for v in range(1, n + 1):
            if v not in grid[r] and all(grid[i][c] != v for i in range(n)):
                grid[r][c] = v
                fill(pos + 1)
                grid[r][c] = 0
    fill(0)
    return out


def _fence(rows):
    return "```\n" + "\n".join(" ".join(map(str, r)) for r in rows) + "\n```"


def test_latin_square_accepts_other_completions_and_rejects_corruption():
    env, others = load("latin_square"), 0
    for _, s, inst in instances("latin_square"):
        n = inst["n"]
        assert any(v == 0 for row in inst["grid"] for v in row)
        solution = [list(map(int, line.split())) for line in env.reference(inst).strip("`\n").splitlines()]
        assert score(env, inst, "```text\n" + "\n".join(",".join(map(str, r)) for r in solution) + "\n```") == 1.0
        for completion in _latin_completions(inst):
            assert score(env, inst, _fence(completion)) == 1.0
            others += completion != solution
        rng = random.Random(s)
        r, c = rng.randrange(n), rng.randrange(n)
        bad = [row[:] for row in solution]
        bad[r][c] = bad[r][c] % n + 1
        assert score(env, inst, _fence(bad)) == 0.0
        # A valid Latin square that ignores a given cell is rejected too.
        gr, gc = next((i, j) for i in range(n) for j in range(n) if inst["grid"][i][j])
        a, b = solution[gr][gc], solution[gr][gc] % n + 1
        swapped = [[b if v == a else a if v == b else v for v in row] for row in solution]
        assert score(env, inst, _fence(swapped)) == 0.0
    assert others > 0


def _queens(n, given):
    fixed = dict(given)
    for perm in itertools.permutations(range(n)):
        if len({r + c for r, c in enumerate(perm)}) == n == len({r - c for r, c in enumerate(perm)}):
            yield list(perm), all(perm[r] == c for r, c in fixed.items())


def test_n_queens_accepts_other_completions_and_rejects_corruption():
    env, others, ignored = load("n_queens"), 0, 0
    for _, s, inst in instances("n_queens", (1, 2)):
        n, planted = inst["n"], _values(env.reference(inst))
        assert inst["given"] and all(planted[r] == c for r, c in inst["given"])
        for cols, keeps_given in _queens(n, inst["given"]):
            assert score(env, inst, answer(env, cols)) == float(keeps_given)
            others += keeps_given and cols != planted
            ignored += not keeps_given
    assert others > 0 and ignored > 0
    for _, s, inst in instances("n_queens"):
        planted = _values(env.reference(inst))
        r = s % inst["n"]
        bad = planted[:r] + [(planted[r] + 1) % inst["n"]] + planted[r + 1:]
        assert score(env, inst, answer(env, bad)) == 0.0
