import json
import random

import pytest

from envs.builtin.repeat_digits import RepeatDigits
from envs.protocol import load_environment
from envs.errors import UnknownEnvironmentError
from envs.registry import builtin_environments, resolve_environment


@pytest.fixture(scope="module")
def env():
    name, source = resolve_environment("repeat_digits")
    assert name == "repeat_digits"
    return load_environment(source, filename="repeat_digits.py")


def test_reference_scores_one(env):
    for difficulty in range(6):
        for seed in range(50):
            inst = env.sample(random.Random(seed), difficulty)
            json.dumps(inst)
            assert inst["length"] == difficulty + 2
            assert env.score(inst, env.reference(inst)) == 1.0


def test_prompt_and_partial_credit(env):
    inst = {"digit": 1, "length": 4}
    assert env.prompt(inst) == "Repeat the digit 1 exactly 4 times:"
    assert env.score(inst, "11a1") == 0.75  # 3 of 4 positions right
    assert env.score(inst, "1121") == 0.8125  # (3 + 0.25 for the wrong digit) / 4
    assert env.score(inst, "  11") == 0.5  # leading whitespace stripped, missing chars wrong
    assert env.score(inst, "111111") == 1.0  # only the first L characters count
    assert env.score(inst, "") == 0.0


def test_same_seed_same_instance(env):
    a = env.sample(random.Random(7), 3)
    assert a == env.sample(random.Random(7), 3)
    assert {env.sample(random.Random(s), 1)["digit"] for s in range(100)} == set(range(10))


def test_module_import_matches_source(env):
    assert RepeatDigits().sample(random.Random(1), 2) == env.sample(random.Random(1), 2)


def test_registry(tmp_path):
    assert "repeat_digits" in builtin_environments()
    assert "__init__" not in builtin_environments()
    p = tmp_path / "mine.py"
    p.write_text("x = 1\n")
    assert resolve_environment(str(p)) == ("mine", "x = 1\n")
    with pytest.raises(UnknownEnvironmentError, match="repeat_digits") as e:
        resolve_environment("nope")
    assert isinstance(e.value, KeyError)
