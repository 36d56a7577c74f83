"""Judge pools on a real Ray cluster (one for the module), with tiny models built locally: each kind end to
end, a worker killed mid-call replaced and its requests re-issued, and judges that keep failing stopping with
an error that names them. Starting an actor (torch + transformers) takes seconds here, so the module starts
every pool at once and each test uses its own."""
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import ray

from actors.judge import LocalGenerativeJudge, step_scores_to_tokens
from cluster.config.schema import JudgeConfig, ModelConfig
from cluster.runtime.judges import Judge, JudgeFailed, JudgePool, _one_line, prepare_judge_model
from trainers.models import ModelError, build_char_tokenizer, build_tiny_reward_model, load_tokenizer

GENERATIVE = {"kind": "generative", "template": "Is {question} true? Answer yes or no.\n", "parse": "yes_no"}


def _jc(**kw):
    return JudgeConfig(**{"cpus_per_worker": 0.5, "timeout_s": 60.0, **kw})


def _broken_reward_model(folder):
    """Loads, but its embedding has 8 rows while the tokenizer's ids go up to 98: every call fails."""
    import torch
    from transformers import AutoModelForSequenceClassification, LlamaConfig

    config = LlamaConfig(vocab_size=8, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, num_labels=1, pad_token_id=0)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    build_char_tokenizer().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def model_cfg():
    cfg = ModelConfig()
    cfg.cache_dir = os.environ["EVOFORGE_CACHE"]
    return cfg


@pytest.fixture(scope="module")
def folders(tmp_path_factory, model_cfg):
    root = tmp_path_factory.mktemp("judge-models")
    prepare_judge_model(_jc(kind="scalar"), model_cfg)  # the tiny reward model, built once before the threads
    return {"broken": _broken_reward_model(root / "broken"),
            "two_labels": str(build_tiny_reward_model(root / "two-labels", num_labels=2)), "missing": str(root / "no")}


@pytest.fixture(scope="module")
def pools(ray_local, model_cfg, folders):
    """Every pool of the module, started concurrently."""
    configs = {
        "critic": _jc(**GENERATIVE),
        "rubric": _jc(kind="rubric", max_new_tokens=6, plan_max_new_tokens=5),
        "rm": _jc(kind="scalar", num_workers=2),
        "prm": _jc(kind="process", step_separator="\n"),
        "slowpoke": _jc(kind="scalar", timeout_s=0.05, max_failures=2),
        "broken": _jc(kind="scalar", model=folders["broken"], max_failures=3),
    }
    prepare_judge_model(configs["critic"], model_cfg)  # and the tiny causal LM
    with ThreadPoolExecutor(len(configs)) as ex:
        futures = {name: ex.submit(JudgePool, name, jc, "PACK", model_cfg) for name, jc in configs.items()}
    started = {name: f.result() for name, f in futures.items() if f.exception() is None}
    try:
        for f in futures.values():
            f.result()  # the first pool that could not start fails the module
        yield started
    finally:
        for p in started.values():
            p.close()


def _pairs(n, long=False):
    pad = "x" * 200 if long else ""
    return [{"prompt": f"Question {i}: what is {i} + {i}? {pad}",
             "response": f"It is {2 * i + i % 2}. " * (40 if long else 1)} for i in range(n)]


def test_generative_judge_returns_raw_text_and_counts_unparseable(pools, model_cfg):
    pool = pools["critic"]
    assert isinstance(pool, Judge) and pool.kind == "generative"
    requests = [{"question": "2 + 2 = 4"}, {"question": "3 > 5", "unused": 1}]
    got = pool.judge(requests)
    local = LocalGenerativeJudge(0, prepare_judge_model(pool.jc, model_cfg), template=pool.jc.template,
                                 max_new_tokens=pool.jc.max_new_tokens)
    assert [r["text"] for r in got] == [r["text"] for r in local.judge(requests)]  # greedy, same model
    assert all(r["text"] and r["parsed"] is False and r["value"] is None for r in got)  # a random model
    with pytest.raises(ValueError, match="judge 'critic': request 0: template needs field"):
        pool.judge([{"claim": "no question field"}])  # the caller's bug: refused at once, not retried
    m = pool.metrics()
    assert m == {"judge/critic/calls": 1, "judge/critic/requests": 2, "judge/critic/failures": 0,
                 "judge/critic/timeouts": 0, "judge/critic/restarts": 0, "judge/critic/unparseable": 2}


def test_rubric_judge_writes_a_checklist_then_judges_with_it(pools, model_cfg):
    """kind=rubric: DeltaRubric's planner then verifier, greedy; the checklist comes back with each verdict."""
    from envs.rubric import VERIFY_TEMPLATE, plan_template

    pool = pools["rubric"]
    assert pool.kind == "generative" and pool.jc.parse == "preference" and pool.jc.template == VERIFY_TEMPLATE
    requests = [{"question": "2 + 2 = ?", "a": "4", "b": "5"}, {"question": "Spell cat", "a": "tac", "b": "cat"}]
    got = pool.judge(requests)
    local = LocalGenerativeJudge(0, prepare_judge_model(pool.jc, model_cfg), template=VERIFY_TEMPLATE,
                                 max_new_tokens=6, plan_template=plan_template(), plan_max_new_tokens=5)
    expected = local.judge(requests)
    assert [(r["checklist"], r["text"]) for r in got] == [(r["checklist"], r["text"]) for r in expected]
    assert all(r["checklist"] and r["value"] in ("A", "B", None) for r in got)
    with pytest.raises(ValueError, match="template needs field"):
        pool.judge([{"question": "no responses"}])


def test_scalar_reward_model_and_a_worker_killed_mid_call(pools):
    pool = pools["rm"]
    requests = _pairs(4) + _pairs(2)  # the last two repeat the first two
    got = pool.judge(requests)
    values = [r["value"] for r in got]
    assert all(set(r) == {"value"} and isinstance(r["value"], float) and math.isfinite(r["value"]) for r in got)
    assert pool.judge(requests) == got  # deterministic
    assert values[4:] == pytest.approx(values[:2], abs=1e-5)  # the same text scores the same
    assert len({round(v, 6) for v in values[:4]}) == 4  # different texts differ

    sizes, seconds = [], 0.0
    while seconds < 1.0:  # a call long enough to kill a worker in the middle of it
        sizes.append(2 * sizes[-1] if sizes else 240)
        big = _pairs(sizes[-1], long=True)
        start = time.monotonic()
        expected = pool.judge(big)
        seconds = time.monotonic() - start
    victim = pool.workers[0]
    killer = threading.Timer(seconds / 4, ray.kill, [victim])
    killer.start()
    got_big = pool.judge(big)
    killer.join()
    assert got_big == expected  # every request answered once, as if nothing had happened
    assert pool.workers[0] is not None and pool.workers[0] != victim
    m = pool.metrics()
    assert m["judge/rm/restarts"] == 1 and m["judge/rm/failures"] == 1 and m["judge/rm/timeouts"] == 0
    assert m["judge/rm/calls"] == 2 + len(sizes) + 1
    assert m["judge/rm/requests"] == 2 * len(requests) + sum(sizes) + len(big)
    assert [ray.get(w.ready.remote())["index"] for w in pool.workers] == [0, 1]  # both slots alive
    pool.close()
    assert pool.pg is None and pool.workers == [None, None]
    with pytest.raises(RuntimeError, match="closed"):
        pool.judge(requests)


def test_process_reward_model_scores_every_step(pools, model_cfg):
    pool = pools["prm"]
    requests = [{"prompt": "Add 12 and 30.\n", "response": "Step 1: 12 + 30.\n\nStep 2: 42.\nAnswer: 42"},
                {"prompt": "Add 1 and 1.\n", "response": "2"}]
    got = pool.judge(requests)
    assert [r["steps"] for r in got] == [["Step 1: 12 + 30.", "Step 2: 42.", "Answer: 42"], ["2"]]
    for req, r in zip(requests, got):
        assert len(r["step_scores"]) == len(r["steps"]) == len(r["spans"])
        assert [req["response"][s:e] for s, e in r["spans"]] == r["steps"]
        assert all(0.0 < s < 1.0 for s in r["step_scores"]) and r["value"] == min(r["step_scores"])
    assert len(set(got[0]["step_scores"])) == 3  # each prefix scored on its own
    assert pool.judge(requests) == got
    # onto response tokens, through a fast tokenizer's offsets
    tok = load_tokenizer(prepare_judge_model(pool.jc, model_cfg))
    enc = tok(requests[0]["response"], add_special_tokens=False, return_offsets_mapping=True)
    per_token = step_scores_to_tokens(got[0]["spans"], got[0]["step_scores"], enc["offset_mapping"])
    assert len(per_token) == len(enc["input_ids"]) and set(per_token) == set(got[0]["step_scores"])
    assert per_token[0] == got[0]["step_scores"][0] and per_token[-1] == got[0]["step_scores"][-1]


def test_judge_past_its_timeout_fails_naming_itself(pools):
    pool = pools["slowpoke"]
    with pytest.raises(JudgeFailed, match=r"^judge 'slowpoke': 2 failed attempts .*last error: "
                                          r"TimeoutError: no answer within timeout_s=0.05\)$"):
        pool.judge(_pairs(100, long=True))
    m = pool.metrics()
    assert m["judge/slowpoke/timeouts"] == 2 and m["judge/slowpoke/failures"] == 2
    assert m["judge/slowpoke/restarts"] == 1  # killed twice, replaced once (the next call replaces it again)


def test_judge_whose_every_call_fails_stops_naming_itself(pools):
    pool = pools["broken"]
    with pytest.raises(JudgeFailed, match=r"^judge 'broken': 3 failed attempts .*last error: IndexError"):
        pool.judge(_pairs(3))
    m = pool.metrics()
    assert m["judge/broken/failures"] == 3 and m["judge/broken/restarts"] == 0  # alive: retried in place


def test_judges_that_cannot_start_say_so(ray_local, model_cfg, folders):
    with pytest.raises(JudgeFailed, match=r"^judge 'late': its workers did not start \(TimeoutError: not ready "
                                          r"within 0.01s\)$"):
        JudgePool("late", _jc(kind="scalar"), "PACK", model_cfg, start_timeout_s=0.01)  # its actor is killed
    with pytest.raises(JudgeFailed, match=r"^judge 'pairwise': cannot prepare model .*num_labels=2; a reward"):
        JudgePool("pairwise", _jc(kind="process", model=folders["two_labels"]), "PACK", model_cfg)
    with pytest.raises(JudgeFailed, match=r"^judge 'ghost': cannot prepare model"):
        JudgePool("ghost", _jc(kind="scalar", model=folders["missing"]), "PACK", model_cfg)
    with pytest.raises(ValueError, match=r"judges.bad.parse='stars'"):
        JudgePool("bad", _jc(parse="stars"), "PACK", model_cfg)


def test_errors_are_one_line_and_show_the_actors_own_exception():
    """What a worker that raised in __init__ reports (seen on a real cluster with an unloadable checkpoint)."""
    trace = ("Traceback (most recent call last):\n  File \"actors/judge.py\", line 9, in __init__\n"
             "trainers.models.ModelError: /m: num_labels=2; a reward model needs exactly 1")
    task = ray.exceptions.RayTaskError("LocalScalarRewardModel.__init__", trace, ModelError("/m: num_labels=2"))
    assert _one_line(ray.exceptions.ActorDiedError(cause=task)) == \
        "ActorDiedError in __init__: trainers.models.ModelError: /m: num_labels=2; a reward model needs exactly 1"
    assert _one_line(task.as_instanceof_cause()) == "ModelError: /m: num_labels=2"
    assert _one_line(ray.exceptions.ActorDiedError()) == \
        "ActorDiedError: The actor died unexpectedly before finishing this task."
    assert len(_one_line(ValueError("x" * 1000))) == 300
