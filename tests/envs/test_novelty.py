"""The novelty gate: the ten seeds are pairwise novel; disguised copies of a seed are not."""
import ast
import builtins
import functools
import itertools
import random
from dataclasses import dataclass, field

import pytest

from envs.novelty import (NoveltyConfig, check_novelty, code_similarity, collapse_duplicates, jaccard,
                          normalized_ast, prompt_similarity, prompt_words, shingles)
from envs.protocol import load_environment
from envs.registry import seed_environments

CFG = NoveltyConfig()

# Same question as the edit_distance seed, written from scratch: different code, identical prompt text.
PROMPT_COPY = '''
import functools
import random
import re


@functools.lru_cache(maxsize=None)
def _lev(first, second):
    if not first or not second:
        return len(first) + len(second)
    if first[0] == second[0]:
        return _lev(first[1:], second[1:])
    return 1 + min(_lev(first[1:], second), _lev(first, second[1:]), _lev(first[1:], second[1:]))


class Levenshtein:
    name = "levenshtein"

    def sample(self, rng, difficulty):
        size = 3 + 2 * max(1, difficulty)
        letters = "abc" if difficulty < 4 else "abcd"
        while True:
            first = "".join(rng.choice(letters) for _ in range(size))
            second = "".join(rng.choice(letters) for _ in range(size + rng.randint(-1, 1)))
            if _lev(first, second) > 1:
                return {"a": first, "b": second}

    def prompt(self, instance):
        return (
            "Compute the Levenshtein (edit) distance between the strings A and B: the minimum "
            "number of single-character insertions, deletions and substitutions needed to turn "
            "A into B.\\n\\n"
            f"A = \\"{instance['a']}\\"\\nB = \\"{instance['b']}\\"\\n\\n"
            "You may reason step by step. End your response with a final line of the form\\n"
            "Answer: <integer>")

    def reference(self, instance):
        return "Answer: %d" % _lev(instance["a"], instance["b"])

    def score(self, instance, response):
        lines = response.strip().splitlines()
        found = re.findall(r"-?[0-9]+", lines[-1]) if lines else []
        return 1.0 if found and int(found[-1]) == _lev(instance["a"], instance["b"]) else 0.0
'''


@dataclass
class Entry:
    name: str
    source: str
    prompts: list = field(default_factory=list)


def prompts_of(source, seeds=range(3), difficulties=(1, 2, 3)):
    env = load_environment(source)
    return [env.prompt(env.sample(random.Random(s), d)) for s, d in zip(seeds, difficulties)]


@functools.lru_cache(maxsize=None)
def library(seed_set="puzzles"):
    return [Entry(n, p.read_text(encoding="utf-8"), prompts_of(p.read_text(encoding="utf-8")))
            for n, p in seed_environments(seed_set).items()]


class _Disguise(ast.NodeTransformer):
    """Renames every identifier the file defines and changes every integer constant >= 2."""

    KEEP = set(dir(builtins)) | {"self", "random", "re", "Counter", "heapq", "math", "itertools", "collections",
                                 "functools", "name", "description", "answer_format", "sample", "prompt",
                                 "reference", "score"}

    def _rename(self, name):
        return name if name in self.KEEP or name.startswith("__") else "my" + name.strip("_").capitalize()

    def visit_Name(self, node):
        node.id = self._rename(node.id)
        return node

    def visit_arg(self, node):
        node.arg, node.annotation = self._rename(node.arg), None
        return node

    def visit_FunctionDef(self, node):
        node.name = self._rename(node.name)
        return self.generic_visit(node)

    def visit_ClassDef(self, node):
        node.name = "Renamed" + node.name
        return self.generic_visit(node)

    def visit_Constant(self, node):
        if type(node.value) is int and node.value >= 2:
            node.value += 1
        return node


def disguise(source):
    tree = _Disguise().visit(ast.parse(source))
    code = ast.unparse(ast.fix_missing_locations(tree))
    return '"""A brand new environment, nothing like the others."""\n# written from scratch\n' + code


def reordered(source):
    tree = ast.parse(source)
    defs = [s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.ClassDef))]
    tree.body = [s for s in tree.body if s not in defs] + defs[::-1]
    return ast.unparse(tree)


def test_normalized_ast_ignores_names_layout_constants_and_docstrings():
    a = '''
"""Doc."""
import random

def helper(values, k):
    """Sum."""
    total = 0  # running
    for v in values:
        total += v * k
    return total

class Env:
    name = "env_a"
    def sample(self, rng, difficulty):
        return {"xs": [rng.randint(1, 9) for _ in range(3 + difficulty)]}
'''
    b = '''import random
def other_helper(items, factor): return sum_it(items, factor)
def sum_it(items, factor):
    acc = 10
    for item in items: acc += item * factor
    return acc
class Renamed:
    name = 'b'
    def sample(self, generator, level):
        return {'ys': [generator.randint(2, 7) for _ in range(5 + level)]}
'''
    na = normalized_ast(a)
    assert "helper" not in na and "total" not in na and "Doc" not in na and "env_a" not in na
    assert "rng" not in na and "random" in na and "randint" in na  # library names stay
    assert "def sample(self, a0, a1)" in na  # protocol names stay, arguments are positional
    b_core = b.replace("def other_helper(items, factor): return sum_it(items, factor)\n", "")
    assert normalized_ast(a) == normalized_ast(b_core)
    with pytest.raises(SyntaxError):
        normalized_ast("def broken(:")


def test_shingles_jaccard_and_prompt_words():
    assert shingles(["a", "b", "c", "d"], 2) == {("a", "b"), ("b", "c"), ("c", "d")}
    assert shingles(["a"], 3) == {("a",)} and shingles([], 3) == set()
    assert jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3) and jaccard(set(), set()) == 0.0
    assert prompt_words("Sum 12 and 7, Then STOP.") == ["sum", "0", "and", "0", ",", "then", "stop", "."]
    assert prompt_similarity("Add 3 and 4. Answer: <integer>", "add 100 and 2000. answer: <integer>") == 1.0
    assert prompt_similarity("", "anything at all") == 0.0
    assert code_similarity("x = 1", "x = 1") == 1.0


def test_seeds_and_starters_are_pairwise_novel():
    """The seed puzzles and the starters pass the novelty gate against each other: a library that starts from
    seed_set=all is consistent. (The starters share one short skeleton; a similarity close to the code threshold
    is why there are six and not more.)"""
    lib = library("all")
    assert len(lib) == 16
    for a, b in itertools.combinations(lib, 2):
        code, prompt = code_similarity(a.source, b.source), prompt_similarity(a.prompts, b.prompts)
        assert code < CFG.code_threshold, (a.name, b.name, code)
        assert prompt < CFG.prompt_threshold, (a.name, b.name, prompt)
    for entry in lib:
        others = [e for e in lib if e.name != entry.name]
        result = check_novelty(entry.source, entry.prompts, others)
        assert result.passed and result.gate == "novelty", result.reason
        assert set(result.details["scores"]) == {e.name for e in others}


@pytest.mark.parametrize("entry", library(), ids=lambda e: e.name)
def test_disguised_copy_of_a_seed_is_rejected_naming_it(entry):
    copy = disguise(entry.source)
    assert copy != entry.source and "class Renamed" in copy
    assert code_similarity(entry.source, copy) >= 0.95
    assert code_similarity(entry.source, reordered(entry.source)) >= CFG.code_threshold
    result = check_novelty(copy, [], library())
    assert not result.passed
    assert f"{entry.name!r}" in result.reason and "code similarity" in result.reason
    assert "prompt similarity" in result.reason
    assert result.details["most_similar"] == entry.name
    scores = result.details["scores"][entry.name]
    assert scores["code"] >= CFG.code_threshold
    # The same question with fresh instances is caught by the prompt text alone.
    again = prompts_of(entry.source, seeds=range(50, 53), difficulties=(2, 3, 4))
    assert prompt_similarity(entry.prompts, again) >= 0.9


def test_prompt_similarity_catches_a_rewrite_that_asks_the_same_question():
    lib = library()
    seed = next(e for e in lib if e.name == "edit_distance")
    assert max(code_similarity(PROMPT_COPY, e.source) for e in lib) < CFG.code_threshold
    result = check_novelty(PROMPT_COPY, prompts_of(PROMPT_COPY), lib)
    assert not result.passed
    assert "'edit_distance'" in result.reason and "(prompt)" in result.reason
    assert result.details["scores"]["edit_distance"]["prompt"] >= CFG.prompt_threshold
    # Without prompts only the code is compared, and the code is new.
    assert check_novelty(PROMPT_COPY, [], lib).passed
    assert prompt_similarity(prompts_of(PROMPT_COPY), seed.prompts) >= 0.9


def test_empty_library_and_unparsable_candidates():
    assert check_novelty("class A: pass", ["p"], []).passed
    result = check_novelty("def broken(:\n  pass", [], library())
    assert result.passed and result.details["most_similar"] in {e.name for e in library()}


def test_collapse_duplicates_keeps_the_first_of_each_group():
    lib = {e.name: e for e in library()}
    ed, ks, lp = lib["edit_distance"], lib["knapsack"], lib["lattice_paths"]
    batch = [
        ed.source,                                  # 0 kept
        ks.source,                                  # 1 kept
        disguise(ed.source),                        # 2 duplicate of 0 (code)
        ed.source + "\n# a comment\n",              # 3 duplicate of 0 (same normalised AST)
        (PROMPT_COPY, prompts_of(PROMPT_COPY)),     # 4 kept: code new, prompts not given for 0
        (lp.source, lp.prompts),                    # 5 kept
        Entry("x", reordered(ks.source)),           # 6 duplicate of 1
        (PROMPT_COPY.replace("levenshtein", "lev2"), prompts_of(PROMPT_COPY, seeds=range(7, 10))),  # 7 of 4
    ]
    kept, duplicate_of = collapse_duplicates(batch)
    assert kept == [0, 1, 4, 5]
    assert duplicate_of == {2: 0, 3: 0, 6: 1, 7: 4}
    assert collapse_duplicates([]) == ([], {})
