"""Start-of-run calibration of library environments: the L5 search with a scripted solver, recorded in the
library, cached per model and environment version.

The fleet here is the EnvFleet interface over one real sandbox pool in this process (no Ray actors: the
search is the subject, not the transport); the solver is scripted (it repeats a digit at most five times),
so every pass rate is known: difficulty d asks for d + 2 digits, the solver scores min(d + 2, 5) / (d + 2).
"""
import re

import pytest

from actors.rollout.hf_backend import Sample
from cluster.episodes.selfplay.calibration import nearest_to_band
from cluster.evaluate import compose_config
from cluster.episodes.selfplay.library_loop import EvoEnv
from envs.library import Library, LibraryEntry
from envs.registry import resolve_environment, seed_environments
from envs.sandbox.limits import Limits
from envs.sandbox.backends import make_pool

SOURCE = resolve_environment("repeat_digits")[1]


class PoolFleet:
    """EnvFleet's calls, on one sandbox pool in this process."""

    name = "repeat_digits"

    def __init__(self, pool):
        self.pool, self.sources = pool, {}

    def load(self, env_id, source):
        self.pool.load(env_id, source)
        self.sources[env_id] = source

    def unload(self, env_ids):
        for env_id in [env_ids] if isinstance(env_ids, str) else env_ids:
            self.pool.unload(env_id)
            self.sources.pop(env_id, None)

    def sample(self, seeds, difficulty, env_id=None):
        return self.pool.sample(env_id or self.name, seeds, difficulty)

    def score(self, items, env_id=None):
        return [r.score for r in self.pool.score(env_id or self.name, items)], {}


class CountsToFive:
    """A scripted solver: 'Repeat the digit D exactly L times:' -> D written min(L, 5) times."""

    model_path = "scripted-counts-to-five"

    def __init__(self, sampling):
        self.sampling, self.calls, self.texts = sampling, 0, {}

    def encode(self, text, shots=()):
        ids = [len(self.texts) + 1]
        self.texts[ids[0]] = text
        return ids

    def generate(self, prompts, sampling, seed):
        self.calls += 1
        out = []
        for ids in prompts:
            digit, length = re.search(r"digit (\d) exactly (\d+) times", self.texts[ids[0]]).groups()
            text = digit * min(int(length), 5)
            out.append([Sample([1], [0.0], text, "stop") for _ in range(sampling.n)])
        return {"samples": out}


@pytest.fixture(scope="module")
def pool():
    with make_pool("bwrap", 1, Limits()) as p:
        yield p


def _evo(tmp_path, pool, source=SOURCE, name="digits", shots=None):
    lib_dir = tmp_path / f"lib-{name}"
    Library(lib_dir, overwrite=True).add(LibraryEntry(name=name, source=source, kind="seed"))
    cfg = compose_config(["selfplay=evoenv", "selfplay.seed_library=false", f"env.library={lib_dir}",
                          "selfplay.calibration_instances=4", "selfplay.calibration_rollouts=2",
                          "selfplay.band=[0.2,0.8]", "selfplay.difficulties=[1,2,3,5,8]"])
    cfg.model.cache_dir = str(tmp_path / "cache")
    solver = CountsToFive(cfg.rollout.sampling)
    evo = EvoEnv(cfg, tmp_path / f"run-{name}", PoolFleet(pool), solver, None, None, shots=shots)
    return evo, solver


def test_calibration_finds_the_band_and_is_cached_per_environment_version(tmp_path, pool):
    evo, solver = _evo(tmp_path, pool)  # calibrates at start (selfplay.calibrate_library defaults on)
    cal = evo.library.get("digits").calibration
    # d=1,2,3 ask for 3,4,5 digits (p = 1, too easy); d=5 asks for 7: p = 5/7, inside [0.2, 0.8]
    assert cal["difficulty"] == 5 and cal["p"] == pytest.approx(5 / 7) and cal["in_band"]
    assert cal["tried"] == {"1": 1.0, "2": 1.0, "3": 1.0, "5": pytest.approx(5 / 7)}
    assert cal["cached"] is False and solver.calls == 4
    assert Library.load(tmp_path / "run-digits" / "library").get("digits").calibration["difficulty"] == 5
    # solver steps draw instances at the calibrated difficulty
    assert {i["data"]["length"] for i in evo.sample(0, [1, 2, 3])} == {7}

    again, solver2 = _evo(tmp_path, pool)  # same model, same environment: from the cache, no generation
    assert solver2.calls == 0
    assert again.library.get("digits").calibration == {**cal, "cached": True}

    # prompts with solved examples before them (env.fewshot) are another measurement: not read from the cache
    _, solver4 = _evo(tmp_path, pool, shots=lambda env_id, difficulty: [("Repeat the digit 1 exactly 3 times:", "111")])
    assert solver4.calls == 4

    changed, solver3 = _evo(tmp_path, pool, SOURCE.replace("max(0, int(difficulty)) + 2", "max(0, int(difficulty)) + 3"),
                            name="digits_v2")  # a new environment version: measured again
    cal3 = changed.library.get("digits_v2").calibration
    assert solver3.calls > 0 and cal3["cached"] is False
    # 4, 5 digits: p = 1; 6 digits (d=3): 5/6, still above the band; 8 digits (d=5): 5/8
    assert cal3["difficulty"] == 5 and cal3["p"] == pytest.approx(5 / 8) and cal3["in_band"]


def test_no_difficulty_in_band_takes_the_nearest():
    tried = {1: 1.0, 2: 1.0, 3: 0.95, 5: 0.0}
    assert nearest_to_band(tried, [0.2, 0.8]) == 3  # 0.15 above beats 0.2 below
    assert nearest_to_band({1: 0.0, 2: 0.0}, [0.2, 0.8]) == 1  # ties: the easier one


def test_the_run_environment_joins_the_library_but_is_never_an_example(tmp_path, pool):
    """selfplay.seed_env: the run's own environment (here repeat_digits) is a library entry of kind task, which
    solver steps draw from and which is calibrated like the rest, but generator prompts show the seeds only."""
    fleet = PoolFleet(pool)
    fleet.load("repeat_digits", SOURCE)
    cfg = compose_config(["selfplay=evoenv", "selfplay.seed_env=true", "selfplay.calibration_instances=2",
                          "selfplay.calibration_rollouts=1", "selfplay.band=[0.2,0.8]", "selfplay.examples=2"])
    cfg.model.cache_dir = str(tmp_path / "cache")
    solver = CountsToFive(cfg.rollout.sampling)
    solver.max_model_len = 100_000
    evo = EvoEnv(cfg, tmp_path / "run", fleet, solver, None, None)
    entry = evo.library.get("repeat_digits")
    assert entry.kind == "task" and entry.calibration["difficulty"] == 5  # as in the test above
    assert len(evo.library.active()) == 11
    _, lineages = evo.generator_prompts(0, solver, count=20)
    shown = {name for lineage in lineages for name in lineage}
    assert "repeat_digits" not in shown and len(shown) > 3


def test_starter_library_and_generator_topics(tmp_path, pool):
    """selfplay.seed_set=starters starts the library from the six starters; selfplay.topics puts one drawn topic
    into each generator prompt (the same draws for the same seed)."""
    fleet = PoolFleet(pool)
    fleet.load("repeat_digits", SOURCE)
    cfg = compose_config(["selfplay=evoenv", "selfplay.seed_set=starters", "selfplay.calibrate_library=false",
                          "selfplay.topics=['count the vowels in a word','the sum of the digits of a number']"])
    cfg.model.cache_dir = str(tmp_path / "cache")
    solver = CountsToFive(cfg.rollout.sampling)
    solver.max_model_len = 100_000
    evo = EvoEnv(cfg, tmp_path / "run", fleet, solver, None, None)
    assert {e.name for e in evo.library.active()} == set(seed_environments("starters"))
    texts, lineages = evo.generator_prompts(0, solver, count=12, seed=5)
    named = [[t for t in cfg.selfplay.topics if f"The new environment's task: {t}.\n" in text] for text in texts]
    assert all(len(n) == 1 for n in named) and {n[0] for n in named} == set(cfg.selfplay.topics)
    assert all(text.index("task: ") < text.index("Write a NEW environment") for text in texts)
    assert set(sum(lineages, [])) <= set(seed_environments("starters"))
    assert evo.generator_prompts(0, solver, count=12, seed=5)[0] == texts
