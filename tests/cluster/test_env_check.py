"""`evoforge env check`: the gates' report, exit codes and JSON, on good, broken and hostile files."""
import json

import pytest

from envs.registry import seed_environments
from tests.conftest import evoforge

GOOD = '''import random

class Parity:
    name = "parity"
    description = "Is the sum of a list even or odd?"
    def sample(self, rng, difficulty):
        return {"xs": [rng.randrange(100) for _ in range(3 + difficulty)]}
    def prompt(self, inst):
        return f"Is the sum of {inst['xs']} even or odd? Answer on the last line with 'even' or 'odd'."
    def reference(self, inst):
        return "even" if sum(inst["xs"]) % 2 == 0 else "odd"
    def score(self, inst, response):
        lines = response.strip().splitlines()
        parity = "even" if sum(inst["xs"]) % 2 == 0 else "odd"
        return float(bool(lines) and lines[-1].strip().lower() == parity)
'''


def check(tmp_path, source, *flags):
    path = tmp_path / "candidate.py"
    path.write_text(source)
    return evoforge("env", "check", str(path), *flags, timeout=120)


def test_good_environment_admitted(tmp_path):
    proc = check(tmp_path, GOOD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [["PASS", "L1"], ["PASS", "L2"], ["PASS", "L3"]]
    assert lines[-1] == "admitted"


def test_json_report(tmp_path):
    proc = check(tmp_path, GOOD, "--json")
    report = json.loads(proc.stdout)
    assert report["admitted"] is True and [g["gate"] for g in report["gates"]] == ["L1", "L2", "L3"]
    assert report["gates"][2]["details"]["mean_scores"]["empty"] == 0.0


@pytest.mark.parametrize("source, gate, words", [
    ("def broken(:\n", "L1", "syntax error at line 1"),
    (GOOD.replace("import random", "import os"), "L1", "import of 'os' is not allowed"),
    (GOOD.replace("import random", "import random\nrandom._os.system('true')"), "L1", "private attribute random._os"),
    (GOOD.replace("return {\"xs\"", "return {\"noise\": random.Random().random(), \"xs\""), "L2", "not deterministic"),
    (GOOD.replace('return "even" if', 'return "odd" if'), "L2", "score(instance, reference) != 1"),
    (GOOD.replace("return float(bool(lines) and", "return float(not lines or"), "L3", "gameable: the empty answer"),
    (GOOD.replace("def sample(self, rng, difficulty):", "def sample(self, rng, difficulty):\n        while True: pass"),
     "L2", "timeout"),
    (GOOD.replace("class Parity:", "while True:\n    pass\nclass Parity:"), "L1", "timeout"),
    ("x = 1\n", "L1", "no environment class"),
])
def test_rejected_at_the_right_gate(tmp_path, source, gate, words):
    proc = check(tmp_path, source, "--json", "--wall-s", "1", "--seeds", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    failed = [g for g in report["gates"] if not g["passed"]]
    assert report["admitted"] is False and failed[0]["gate"] == gate, report
    assert words in failed[0]["reason"], failed[0]["reason"]


def test_usage_errors_exit_2(tmp_path):
    assert evoforge("env", "check", str(tmp_path / "missing.py")).returncode == 2
    assert evoforge("env", "check").returncode == 2
    assert evoforge("env", "check", __file__, "--backend", "nope").returncode == 2


def test_every_seed_and_starter_environment_is_admitted():
    assert len(seed_environments("all")) == 16
    for name, path in seed_environments("all").items():
        proc = evoforge("env", "check", str(path), "--seeds", "4")
        assert proc.returncode == 0, f"{name}: {proc.stdout}{proc.stderr}"


def test_env_list_shows_seeds():
    proc = evoforge("env", "list")
    assert proc.returncode == 0
    names = {line.split()[0] for line in proc.stdout.splitlines()}
    assert set(seed_environments()) <= names and len(seed_environments()) == 10
    starters = {line.split()[0] for line in proc.stdout.splitlines() if line.split()[1] == "starter"}
    assert starters == set(seed_environments("starters")) and len(starters) == 6
