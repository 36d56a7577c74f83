import sys
import time

import pytest

from envs.pool import PoolError, ScoreResult, SubprocessPool
from envs.registry import resolve_environment

NASTY = """
import os

class Nasty:
    name = "nasty"
    def sample(self, rng, difficulty): return {"n": rng.randrange(5)}
    def prompt(self, instance): return "go"
    def reference(self, instance): return "ok"
    def score(self, instance, response):
        if response == "hang":
            while True:
                pass
        if response == "exit":
            os._exit(3)
        if response == "print":
            print("chatter on stdout")
        if response == "raise":
            raise ValueError("boom")
        return 1.0 if response in ("ok", "print") else 0.0
"""


@pytest.fixture(scope="module")
def pool():
    with SubprocessPool(2, timeout_s=1.0) as p:
        p.load("nasty", NASTY)
        p.load("repeat_digits", resolve_environment("repeat_digits")[1])
        yield p


def ok(pool):
    return pool.score("nasty", [{"data": {}, "response": "ok"}] * 3) == [ScoreResult(1.0, "ok")] * 3


def test_end_to_end_repeat_digits(pool):
    insts = pool.sample("repeat_digits", list(range(10)), 1)
    assert [i["seed"] for i in insts] == list(range(10))
    assert insts == pool.sample("repeat_digits", list(range(10)), 1)
    assert all(i["env"] == "repeat_digits" and i["data"]["length"] == 3 for i in insts)
    items = [{"data": i["data"], "response": i["reference"]} for i in insts]
    items.append({"data": {"digit": 1, "length": 4}, "response": "11a1"})
    res = pool.score("repeat_digits", items)
    assert [r.score for r in res] == [1.0] * 10 + [0.75]
    assert {r.verdict for r in res} == {"ok"}


def test_timeout_then_recovers(pool):
    t = time.monotonic()
    res = pool.score("nasty", [{"data": {}, "response": r} for r in ("ok", "hang", "ok")])
    assert time.monotonic() - t < 3
    assert [r.verdict for r in res] == ["ok", "timeout", "ok"]
    assert res[1].score == 0.0 and "1 s" in res[1].error
    assert ok(pool)


def test_crash_then_recovers(pool):
    before = pool.stats()["restarts"]
    res = pool.score("nasty", [{"data": {}, "response": "exit"}])
    assert res[0].verdict == "crashed" and "code 3" in res[0].error
    assert pool.stats()["restarts"] == before + 1
    assert ok(pool)
    assert len(pool.sample("nasty", [1, 2, 3, 4], 0)) == 4  # reloaded after restart


def test_print_and_raise(pool):
    res = pool.score("nasty", [{"data": {}, "response": "print"}, {"data": {}, "response": "raise"}])
    assert res[0] == ScoreResult(1.0, "ok")
    assert res[1].verdict == "error" and "ValueError: boom" in res[1].error


def test_stats(pool):
    s = pool.stats()
    assert s["calls"]["load"] == 2 and s["verdicts"]["ok"] > 0 and s["workers"] == 2


def test_errors():
    with SubprocessPool(1, timeout_s=2.0) as p:
        with pytest.raises(PoolError, match="line 1"):
            p.load("broken", "def (:")
        with pytest.raises(PoolError, match="not loaded"):
            p.score("broken", [])
        p.load("nasty", NASTY)
        assert p.score("nasty", [{"data": {1, 2}, "response": "ok"}])[0].verdict == "error"


def test_bad_argv_fails_loudly():
    with pytest.raises(PoolError, match="could not start"):
        SubprocessPool(1, argv=["/nonexistent/worker"])


def test_close_leaves_no_children():
    p = SubprocessPool(3, timeout_s=1.0)
    p.load("nasty", NASTY)
    procs = [w.proc for w in p._workers]
    assert all(proc.poll() is None for proc in procs)
    p.close()
    assert all(proc.poll() is not None for proc in procs)
    with pytest.raises(PoolError):
        p.score("nasty", [])


ECHO = """
class Echo:
    name = "echo"
    def sample(self, rng, difficulty): return {"n": rng.randrange(10)}
    def prompt(self, instance): return str(instance["n"])
    def reference(self, instance): return str(instance["n"])
    def score(self, instance, response): return float(response == str(instance["n"]))
"""

ONCE = """
class Once:  # loads in the first process that tries (it creates a marker file), fails in every other
    name = "once"
    def __init__(self):
        open({path!r}, "x").close()
    def sample(self, rng, difficulty): return {{}}
    def prompt(self, instance): return ""
    def reference(self, instance): return ""
    def score(self, instance, response): return 0.0
"""


@pytest.mark.parametrize("worker", ["envs.worker", "envs.sandbox.zygote"])
def test_unload_drops_the_environment_everywhere(worker):
    with SubprocessPool(2, argv=[sys.executable, "-m", worker], timeout_s=5.0) as p:
        p.load("a", ECHO)
        p.load("b", ECHO)
        assert p.loaded() == {"pool": ["a", "b"], "workers": [["a", "b"], ["a", "b"]]}
        assert p.unload("a") == {"unloaded": True, "loaded": 1}
        assert p.unload("a") == {"unloaded": False, "loaded": 1}  # twice, or never loaded: a no-op
        assert p.loaded() == {"pool": ["b"], "workers": [["b"], ["b"]]}
        assert p.stats()["loaded_envs"] == 1 and p.stats()["calls"]["unload"] == 2
        with pytest.raises(PoolError, match="not loaded"):
            p.sample("a", [1], 0)
        for w in p._workers:  # the processes themselves forgot it, not only the pool's record
            resp = w.call({"op": "sample", "env_id": "a", "seeds": [1], "difficulty": 0}, 5.0)
            assert not resp["ok"] and "not loaded" in resp["error"]
        # a restarted worker loads what the pool serves, never an unloaded environment
        p._workers[0].stop()
        assert len(p.sample("b", [1, 2, 3, 4], 0)) == 4
        assert p.loaded() == {"pool": ["b"], "workers": [["b"], ["b"]]}
        # a stopped worker is not started just to unload
        p._workers[1].stop()
        p.unload("b")
        assert p._workers[1].proc is None and p.loaded()["workers"][1] is None
        p.load("a", ECHO)  # loading it again works as before
        assert [i["seed"] for i in p.sample("a", [5, 6], 0)] == [5, 6]


def test_failed_load_leaves_nothing_behind(tmp_path):
    with SubprocessPool(2, timeout_s=5.0) as p:
        with pytest.raises(PoolError, match="1/2 workers failed"):
            p.load("once", ONCE.format(path=str(tmp_path / "marker")))
        assert (tmp_path / "marker").exists()  # it did load in one worker ...
        assert p.loaded() == {"pool": [], "workers": [[], []]}  # ... which unloaded it again
        for w in p._workers:
            resp = w.call({"op": "sample", "env_id": "once", "seeds": [1], "difficulty": 0}, 5.0)
            assert not resp["ok"] and "not loaded" in resp["error"]
