"""Reasoning Gym adapter: generated sources loaded like any environment, in process and in a worker."""
import functools
import json
import random

import pytest

pytest.importorskip("reasoning_gym")

from envs.adapters.reasoning_gym import (  # noqa: E402
    MULTILINE, TEMPLATE_PATH, UNSUPPORTED, UnknownDatasetError, list_datasets, reasoning_gym_source, resolve)
from envs.pool import ScoreResult, SubprocessPool  # noqa: E402
from envs.protocol import load_environment  # noqa: E402
from envs.errors import UnknownEnvironmentError  # noqa: E402

# References score exactly 1.0 here; rotate_matrix has multi-line ("fenced") answers.
DATASETS = ["basic_arithmetic", "chain_sum", "leg_counting", "word_sorting", "rotate_matrix"]
SEEDS = range(4)
DIFFICULTIES = (1, 3)


@functools.lru_cache(maxsize=None)
def load(dataset):
    name, source = resolve(dataset)
    return load_environment(source, filename=name)


def sample(env, seed, difficulty):
    """An instance as the trainer sees it (after the worker's JSON round trip)."""
    return json.loads(json.dumps(env.sample(random.Random(seed), difficulty), allow_nan=False))


def test_list_datasets():
    names = list_datasets()
    assert names == sorted(names) and len(names) > 90
    assert set(DATASETS) <= set(names) and MULTILINE <= set(names)
    assert not set(UNSUPPORTED) & set(names)


@pytest.mark.parametrize("dataset", DATASETS)
def test_protocol(dataset):
    env = load(dataset)
    assert env.name == f"rg_{dataset}"
    assert env.answer_format == ("fenced" if dataset in MULTILINE else "final_line")
    for d in DIFFICULTIES:
        for s in SEEDS:
            raw = env.sample(random.Random(s), d)
            inst = sample(env, s, d)
            assert inst == raw and inst["dataset"] == dataset  # JSON-safe as it is
            assert inst == sample(env, s, d)  # same seed, same instance
            prompt = env.prompt(inst)
            assert inst["question"] in prompt and ("Answer:" in prompt or "```" in prompt)
            ref = env.reference(inst)
            assert env.score(inst, ref) == 1.0, (d, s, ref)
            assert env.score(inst, f"Let me think.\n\n{ref}\n") == 1.0
            for bad in ("", "   \n", "Answer:", "Answer: not the answer at all", "```\nnope\n```", None):
                assert env.score(inst, bad) == 0.0, (d, s, bad)
    assert len({json.dumps(sample(env, s, 1)) for s in SEEDS}) == len(SEEDS)


def test_difficulty_maps_to_curriculum_level():
    env = load("basic_arithmetic")
    assert [sample(env, 0, d)["level"] for d in (-2, 0, 1, 2, 3, 50)] == [0, 0, 0, 1, 2, 4]
    terms = [len(sample(env, s, d)["metadata"]["expression"].split()) for d in (1, 5) for s in SEEDS]
    assert sum(terms[len(SEEDS):]) > sum(terms[:len(SEEDS)])  # harder: longer expressions
    # A curriculum level that fails upstream validation falls back to a lower one.
    assert sample(load("caesar_cipher"), 0, 5)["level"] == 1
    # No curriculum: difficulty is ignored.
    assert sample(load("acre"), 0, 3)["level"] is None


def test_graded_scorer_partial_credit():
    env = load("word_sorting")  # Reasoning Gym's default scorer: partial credit for supersets
    inst = sample(env, 1, 1)
    partial = env.score(inst, f"Answer: {inst['answer']} extra")
    assert 0.0 < partial < 1.0


def test_lossy_metadata_is_regenerated():
    env = load("arc_agi")  # its scorer compares a parsed board with tuple-of-tuples metadata
    inst = sample(env, 0, 1)
    assert inst["lossy"] and not sample(load("chain_sum"), 0, 1)["lossy"]
    ref = env.reference(inst)
    assert env.score(inst, ref) == 1.0  # deterministic regeneration from (seed, level)
    # A regenerated question that differs falls back to the stored JSON copy; for
    # this scorer the lists in that copy never equal the parsed tuples.
    assert env.score({**inst, "question": inst["question"] + " "}, ref) < 1.0


def test_source_substitution_and_unknown_names():
    src = reasoning_gym_source("chain_sum")
    assert "\nDATASET = 'chain_sum'\n" in src and "\nANSWER_FORMAT = 'final_line'\n" in src
    assert resolve("rg_chain_sum") == ("rg_chain_sum", src)
    assert load_environment(TEMPLATE_PATH.read_text()).name == "rg_basic_arithmetic"  # a working env itself
    with pytest.raises(UnknownDatasetError, match="basic_arithmetic") as e:
        resolve("basic_arithmatic")
    assert isinstance(e.value, UnknownEnvironmentError)
    with pytest.raises(UnknownDatasetError, match="not supported"):
        resolve("composite")
    with pytest.raises(UnknownDatasetError, match="available"):
        resolve("'; import os #")


def test_through_worker_subprocess():
    name, source = resolve("chain_sum")
    with SubprocessPool(1, timeout_s=30.0) as pool:
        info = pool.load("rg", source)
        assert info["name"] == name and info["answer_format"] == "final_line"
        items = pool.sample("rg", [5, 6, 5], 2)
        assert items[0] == items[2] and items[0]["data"] != items[1]["data"]
        assert items[0]["data"] == sample(load("chain_sum"), 5, 2)  # same in and out of process
        responses = [items[0]["reference"], "Answer: 123456789012", ""]
        results = pool.score("rg", [{"data": items[0]["data"], "response": r} for r in responses])
        assert results == [ScoreResult(1.0, "ok"), ScoreResult(0.0, "ok"), ScoreResult(0.0, "ok")]


def test_datasets_run_in_the_bwrap_sandbox():
    """Reasoning Gym is a trusted extra import: its lazy submodules and data files work under bubblewrap."""
    from envs.sandbox.limits import Limits
    from envs.sandbox import bwrap
    from envs.sandbox.backends import make_pool

    assert bwrap.available() is None, f"{bwrap.available()} (`make test` installs it: scripts/system-deps.sh)"
    with make_pool("bwrap", 1, Limits(extra_imports=["reasoning_gym"], memory_mb=4096, wall_s=30, cpu_s=30)) as pool:
        for dataset in ("chain_sum", "word_sorting"):  # word_sorting reads reasoning_gym/data/
            name, source = resolve(dataset)
            pool.load(name, source)
            insts = pool.sample(name, [1, 2], 1)
            res = pool.score(name, [{"data": i["data"], "response": i["reference"]} for i in insts]
                             + [{"data": insts[0]["data"], "response": ""}])
            assert [(r.score, r.verdict) for r in res] == [(1.0, "ok"), (1.0, "ok"), (0.0, "ok")], res


def test_dataset_parameters_hold_at_every_difficulty():
    """env.rg_config: fixed dataset parameters replace the curriculum's values of those fields."""
    from envs.adapters.reasoning_gym import DatasetConfigError

    name, source = resolve("chain_sum", {"min_terms": 2, "max_terms": 2, "max_digits": 1})
    assert name == "rg_chain_sum" and "\nCONFIG = {'min_terms': 2, 'max_terms': 2, 'max_digits': 1}\n" in source
    env = load_environment(source, filename=name)
    plain = load("chain_sum")
    for difficulty in (1, 4):
        for seed in range(6):
            inst = sample(env, seed, difficulty)
            terms = inst["question"].split("following arithmetic problem:", 1)[-1].split("=")[0]
            numbers = [int(t) for t in terms.replace("+", " ").replace("-", " ").split()]
            assert len(numbers) == 2 and all(0 <= x <= 9 for x in numbers), inst["question"]
            assert env.score(inst, env.reference(inst)) == 1.0
    # without the parameters the higher level draws more and longer terms
    longest = max(len(sample(plain, s, 4)["question"]) for s in range(6))
    assert longest > max(len(sample(env, s, 4)["question"]) for s in range(6))
    with pytest.raises(DatasetConfigError, match="'max_digit' is not a parameter of Reasoning Gym's 'chain_sum'"):
        resolve("chain_sum", {"max_digit": 1})
    with pytest.raises(DatasetConfigError, match="rejected by 'chain_sum'"):
        resolve("chain_sum", {"min_digits": 3, "max_digits": 1})
