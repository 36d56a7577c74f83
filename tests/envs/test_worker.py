import json
import subprocess
import sys
from pathlib import Path

from envs.registry import resolve_environment

ROOT = str(Path(__file__).resolve().parents[2])
from envs.worker import handle

BAD = """
class Bad:
    name = "bad"
    def sample(self, rng, difficulty):
        return {"s": {1, 2}} if difficulty == 9 else {"x": 1}
    def prompt(self, instance): return "p"
    def reference(self, instance): return "r"
    def score(self, instance, response):
        return {"nan": float("nan"), "str": "1", "big": 5, "neg": -1}.get(response, 0.5)
"""


def test_handle_ops():
    cache = {}
    assert handle({"id": 1, "op": "ping"}, cache)["result"] == "pong"
    r = handle({"id": 2, "op": "load", "env_id": "b", "source": BAD}, cache)
    assert r["ok"] and r["result"]["name"] == "bad"
    r = handle({"id": 3, "op": "sample", "env_id": "b", "seeds": [1, 2], "difficulty": 0}, cache)
    assert [i["seed"] for i in r["result"]] == [1, 2] and r["result"][0]["data"] == {"x": 1}
    r = handle({"id": 4, "op": "sample", "env_id": "b", "seeds": [1], "difficulty": 9}, cache)
    assert not r["ok"] and "not JSON-serialisable" in r["error"]
    items = [{"data": {}, "response": k} for k in ("nan", "str", "big", "neg", "ok")]
    r = handle({"id": 5, "op": "score", "env_id": "b", "items": items}, cache)
    assert r["ok"] and r["result"] == [0.0, 0.0, 1.0, 0.0, 0.5]
    assert [e is None for e in r["errors"]] == [False, False, True, True, True]
    assert not handle({"id": 6, "op": "score", "env_id": "zz", "items": []}, cache)["ok"]
    assert "unknown op" in handle({"id": 7, "op": "what"}, cache)["error"]
    r = handle({"id": 8, "op": "load", "env_id": "c", "source": "x ="}, cache)
    assert not r["ok"] and "line 1" in r["error"]


def test_subprocess_protocol_survives_prints():
    _, source = resolve_environment("repeat_digits")
    marker = "def score(self, instance: dict, response: str) -> float:"
    assert marker in source
    # Prints, raw fd-1 writes and stdin reads must not touch the protocol.
    noisy = source.replace(marker, marker + """
        import os, sys
        print('noise')
        os.write(1, b'raw noise\\n')
        assert sys.stdin.read() == ''""")
    reqs = [{"id": 1, "op": "load", "env_id": "r", "source": noisy},
            {"id": 2, "op": "score", "env_id": "r",
             "items": [{"data": {"digit": 1, "length": 4}, "response": "11a1"}]}]
    stdin = "".join(json.dumps(r) + "\n" for r in reqs) + "not json\n"
    out = subprocess.run([sys.executable, "-m", "envs.worker"], input=stdin, text=True,
                         capture_output=True, timeout=30, cwd=ROOT)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["ok"] for r in lines] == [True, True, False]
    assert lines[1]["result"] == [0.75]
    assert "noise" in out.stderr and "raw noise" in out.stderr


ANSWERS = """
import json
from envs.parsing import extract_answer

class Answers:
    name = "answers"
    answer_format = FORMAT
    VALUES = [7, 3.0, 2.5, True, [1, 2.0, "a"], (4, 5), {"k": [1, None]}, "free text", {1, 2}, None, float("nan")]
    def sample(self, rng, difficulty):
        return {"i": difficulty}
    def prompt(self, instance):
        return "p"
    def reference(self, instance):
        return self.VALUES[instance["i"]]
    def score(self, instance, response):
        return float(extract_answer(response, self.answer_format) == self.expected(instance))
    def expected(self, instance):
        return ["7", "3", "2.5", "true", '[1, 2, "a"]', "[4, 5]", '{"k": [1, null]}', "free text"][instance["i"]]
"""


def test_reference_values_become_their_text_form_in_the_answer_format():
    """reference() may return any JSON-serialisable answer: score() gets its one text form, written as
    a response in the environment's answer_format (a str is used unchanged, as before)."""
    wrapped = {"final_line": "{}", "raw": "{}", "auto": "{}", "boxed": "\\boxed{{{}}}", "fenced": "```\n{}\n```"}
    for fmt, form in wrapped.items():
        cache = {}
        assert handle({"id": 1, "op": "load", "env_id": "a", "source": ANSWERS.replace("FORMAT", repr(fmt))},
                      cache)["ok"]
        refs = []
        for i in range(8):
            r = handle({"id": 2, "op": "sample", "env_id": "a", "seeds": [0], "difficulty": i}, cache)
            assert r["ok"], r
            refs.append(r["result"][0]["reference"])
            if i == 7:
                continue  # a str: the response as the env wrote it
            s = handle({"id": 3, "op": "score", "env_id": "a",
                        "items": [{"data": r["result"][0]["data"], "response": refs[-1]}]}, cache)
            assert s["result"] == [1.0], (fmt, i, refs[-1], s)
        texts = ["7", "3", "2.5", "true", '[1, 2, "a"]', "[4, 5]", '{"k": [1, null]}']
        assert refs == [form.format(t) for t in texts] + ["free text"], (fmt, refs)


def test_reference_values_json_cannot_write_are_refused_with_the_rule():
    cache = {}
    handle({"id": 1, "op": "load", "env_id": "a", "source": ANSWERS.replace("FORMAT", "'final_line'")}, cache)
    for i, what in ((8, "set"), (9, "NoneType"), (10, "float")):
        r = handle({"id": 2, "op": "sample", "env_id": "a", "seeds": [5], "difficulty": i}, cache)
        assert not r["ok"] and f"reference() returned a {what} (seed 5)" in r["error"], r
        assert "JSON-serialisable answer" in r["error"]
