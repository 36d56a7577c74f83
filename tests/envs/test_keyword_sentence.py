import json
import random

import pytest

from envs.critique import majority_index
from envs.protocol import load_environment
from envs.registry import builtin_environments, resolve_environment


@pytest.fixture(scope="module")
def env():
    name, source = resolve_environment("keyword_sentence")
    assert name == "keyword_sentence" and "keyword_sentence" in builtin_environments()
    return load_environment(source, filename="keyword_sentence.py")


def test_reference_scores_one_and_words_grow_with_difficulty(env):
    for difficulty in range(5):
        for seed in range(40):
            inst = env.sample(random.Random(seed), difficulty)
            json.dumps(inst)
            assert len(inst["words"]) == max(1, difficulty) + 1 and len(set(inst["words"])) == len(inst["words"])
            assert env.score(inst, env.reference(inst)) == 1.0
    assert env.sample(random.Random(3), 2) == env.sample(random.Random(3), 2)


def test_every_word_as_a_whole_word_on_the_first_line(env):
    inst = {"words": ["river", "blue"]}
    assert env.prompt(inst) == "Write one short sentence that uses all of these words: river, blue."
    assert env.score(inst, "The Blue river runs past the town.") == 1.0  # any case, any order
    assert env.score(inst, "Two blue rivers meet.") == 1.0  # a plural counts
    assert env.score(inst, "The river runs past the town.") == 0.0  # one word missing
    assert env.score(inst, "A bluebird sat by the riverbank.") == 0.0  # inside another word: not the word
    assert env.score(inst, "The river is wide.\nIt is blue.") == 0.0  # only the first line is the sentence
    assert env.score(inst, "\n\n  Blue river.") == 1.0  # blank lines before it are skipped
    assert env.score(inst, "") == 0.0


def test_right_answers_differ_so_majority_vote_picks_the_first(env):
    # the reason this environment exists: two right sentences are rarely the same text, so majority vote over
    # them falls back to the first candidate in the order given, right or wrong
    inst = {"words": ["moon", "coffee"]}
    candidates = ["The moon is bright.", "I drink coffee under the moon.", "Coffee and the moon at night."]
    assert [env.score(inst, c) for c in candidates] == [0.0, 1.0, 1.0]
    assert majority_index(candidates) == 0
