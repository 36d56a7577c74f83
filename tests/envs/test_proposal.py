"""The generator's prompt, source extraction from its response, and the strict L4 yes/no reading."""
import ast

import pytest

from envs.proposal import (DEFAULT_EXAMPLE_CHARS, compact_source, extract_source, generator_prompt, parse_yes_no,
                           self_review_prompt)
from envs.registry import seed_environments
from envs.sandbox.limits import ALLOWED_IMPORTS

SEEDS = {n: p.read_text(encoding="utf-8") for n, p in seed_environments().items()}
ENV = 'class Tiny:\n    name = "tiny"\n\n    def sample(self, rng, difficulty):\n        return {"x": 1}\n'


def test_generator_prompt_states_the_protocol_and_shows_the_examples():
    examples = [("edit_distance", SEEDS["edit_distance"]), ("subset_sum", SEEDS["subset_sum"])]
    text = generator_prompt(examples)
    for needle in ("sample(self, rng, difficulty)", "prompt(self, instance)", "reference(self, instance)",
                   "score(self, instance, response)", "[0, 1]", "JSON", "NEW", "difficulty",
                   "exactly one ```python code block", "# edit_distance", "# subset_sum", "class EditDistance",
                   "class SubsetSum", "def score(self, instance: dict, response: str) -> float:"):
        assert needle in text, needle
    assert all(m in text for m in ALLOWED_IMPORTS if m != "__future__")
    assert text.count("```python\n") == 2
    # Two short seeds fit in about 1,500 tokens of a small model (SmolLM2's tokenizer: 5,222 characters are
    # 1,483 tokens; any two seeds 1,428 to 1,560).
    short = generator_prompt([("edit_distance", SEEDS["edit_distance"]),
                              ("longest_increasing_subsequence", SEEDS["longest_increasing_subsequence"])])
    assert len(short) < 5400
    assert "An existing environment:" in generator_prompt(examples[:1])
    assert "Existing environments" not in generator_prompt([])
    assert "numpy" not in generator_prompt([], allowed_imports=("math",)) and "math" in text
    assert "task:" not in text
    topical = generator_prompt(examples, topic="count the vowels in a word. ")
    assert topical.replace("The new environment's task: count the vowels in a word.\n\n", "") == text


def test_compact_source_keeps_the_environment_class_whole_when_it_can():
    src = SEEDS["edit_distance"]
    assert compact_source(src, len(src)) == src
    short = compact_source(src)
    assert len(short) <= DEFAULT_EXAMPLE_CHARS
    tree = ast.parse(short)  # still valid Python
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    assert [f.name for f in cls.body if isinstance(f, ast.FunctionDef)] == ["sample", "prompt", "reference",
                                                                             "score"]
    assert "Levenshtein distance between two random strings" in short  # the docstring's summary stays
    assert "Answer format" not in short  # the rest of the docstring goes
    helpers = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert helpers[0].name == "_final_line" and ast.unparse(helpers[0].body[0]) == "..."
    assert ast.unparse(helpers[-1].body[0]) != "..."  # elided only as far as needed


@pytest.mark.parametrize("name", sorted(SEEDS))
@pytest.mark.parametrize("max_chars", [400, 1500, DEFAULT_EXAMPLE_CHARS])
def test_compact_source_respects_max_chars(name, max_chars):
    short = compact_source(SEEDS[name], max_chars)
    assert len(short) <= max_chars
    assert short.startswith('"""' + name)
    if not short.endswith("# ... (truncated)"):
        ast.parse(short)


def test_extract_source_from_well_formed_responses():
    assert extract_source(f"Here it is:\n```python\n{ENV}```\nEnjoy.") == ENV
    assert extract_source(f"```py\n{ENV}```") == ENV
    assert extract_source(f"```Python3\n{ENV}```") == ENV
    assert extract_source(f"```\n{ENV}```") == ENV  # untagged but parses
    assert extract_source(ENV) == ENV  # no fence at all, but the whole response is a module with a class


@pytest.mark.parametrize("response", [
    "", "I cannot write that.", "An environment could count primes below n.\nIt would be hard.",
    "```\nthis is not python, just prose in a fence\n```", "```text\nclass Looks: pass\n```",
    "```python\n```", "x = 1 +", None, "Here is my idea:\n```\nan environment that counts primes",
], ids=["empty", "prose", "prose-lines", "untagged-prose", "other-language", "empty-block", "bad-raw", "none",
        "open-prose"])
def test_extract_source_gives_none_without_code(response):
    assert extract_source(response) is None


def test_extract_source_picks_the_largest_block_defining_a_class():
    usage = "```python\nenv = Tiny()\nprint(env.sample(None, 1))\n```"
    bigger_helper = "```python\n" + "\n".join(f"X{i} = {i}" for i in range(40)) + "\n```"
    small = '```python\nclass Small:\n    name = "s"\n```'
    response = f"Plan:\n{usage}\nThe file:\n```python\n{ENV}```\n{bigger_helper}\n{small}\nDone."
    assert extract_source(response) == ENV
    assert extract_source(f"{usage}\n{bigger_helper}").startswith("X0 = 0")  # no class: the largest block


def test_extract_source_takes_an_unterminated_fence_at_the_end():
    cut = f"Sure.\n```python\n{ENV}    def prompt(self, instance):\n        return 'x"
    assert extract_source(cut).startswith("class Tiny:") and extract_source(cut).endswith("return 'x\n")
    assert extract_source(f"```\n{ENV}") == ENV
    assert extract_source(f"```\n{ENV}    def prompt(self,").startswith("class Tiny:")  # untagged, open, cut


def test_extract_source_returns_a_python_block_that_does_not_parse():
    broken = "class Broken:\n    def sample(self, rng difficulty):\n        pass\n"
    assert extract_source(f"```python\n{broken}```") == broken  # L1 reports the syntax error


def test_self_review_prompt():
    text = self_review_prompt(SEEDS["edit_distance"], "Compute the distance of A and B.\n", "Answer: 3")
    assert "class EditDistance" in text and "Compute the distance of A and B." in text and "Answer: 3" in text
    assert text.rstrip().endswith("Reply with one word: yes or no.")
    assert len(self_review_prompt(SEEDS["n_queens"], "p", "r", max_chars=800)) < 1400


@pytest.mark.parametrize("text, verdict", [
    ("yes", True), ("No", False), ("Yes.", True), ("YES!", True), ("**no**", False), ('"yes"', True),
    ("Answer: yes", True), ("Final answer: **No**", False),
    ("The prompt asks for the distance and the oracle computes it.\nyes", True),
    ("Let me check.\nThe reference is the sorted list, the prompt asks for any order.\nNo.", False),
    ("Yes, the prompt matches the oracle.", True), ("No, the oracle sorts the list.", False),
    ("Yes. The prompt asks exactly for the distance.", True),
    # hedged, contradictory or unreadable: None (the gate fails)
    ("Yes, but the answer format differs.", None), ("yes and no", None), ("Yes, probably.", None),
    ("Yes.\nActually, no: the bound is wrong.", None), ("Yes. However the format differs.", None),
    ("No\nyes", None), ("I think so.", None), ("Yeah", None), ("Nope", None), ("yesterday", None),
    ("The answer is yes", None), ("", None), ("   \n ", None), (None, None),
])
def test_parse_yes_no_is_strict(text, verdict):
    assert parse_yes_no(text) is verdict
