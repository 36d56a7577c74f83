"""Critical-step optimisation (the `cso` episode kind): config checks, Monte-Carlo step values on a scripted policy
and the expert's proposals without a cluster; then end to end on the real stack (embedded Ray on loopback,
DeepSpeed over gloo, the transformers rollout worker, the tiny model): failures mined, Monte-Carlo values, the
oracle expert's steps, branched continuations, step-level DPO, a PRM trained on the values that scores the later
steps, and a resumed run that reproduces the uninterrupted one."""
import importlib.util
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from cluster.config.schema import SamplingConfig

from cluster.episodes.cso.config import CSOConfig
from cluster.evaluate import compose_config as compose
from cluster.config.errors import ConfigError
from cluster.runconfig.checks import validate
from trainers.cso import split_steps
from trainers.models import build_char_tokenizer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def _env(name="stepwise_sum"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "envs" / "builtin" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.StepwiseSum()


def test_stepwise_sum_scores_the_first_answer_line_only():
    env = _env()
    inst = {"terms": [3, 5, 2]}
    assert env.reference(inst) == "3 + 5 = 8\n8 + 2 = 10\nAnswer: 10"
    assert env.score(inst, env.reference(inst)) == 1.0
    assert env.score(inst, "3 + 5 = 9\nanswer: 10.") == 1.0  # only the outcome is verified
    assert env.score(inst, "Answer: 11\nAnswer: 10") == 0.0  # the first answer line counts
    assert env.score(inst, "3 + 5 = 8\n8 + 2 = 10") == 0.0 and env.score(inst, None) == 0.0


@pytest.mark.parametrize("overrides, message", [
    (["episodes.cso.prm=oracle"], "episodes.cso.prm='oracle': use mc, trained, judge"),
    (["episodes.cso.expert=human"], "episodes.cso.expert='human': use policy, oracle"),
    (["episodes.cso.prm=judge"], "episodes.cso.prm=judge needs episodes.cso.prm_judge"),
    (["episodes.cso.mc_samples=0"], "episodes.cso.mc_samples=0: must be >= 1"),
    (["episodes.cso.chosen_min=1.5"], "chosen_min=1.5, rejected_max=0.5: must lie in [0, 1]"),
    (["episodes.cso.mine_prompts=9", "algorithm.prompts_per_step=8"], "episodes.cso.mine_prompts=9: at most "
                                                                      "algorithm.prompts_per_step=8"),
    (["episodes.cso.rollout_budget=-1"], "rollout_budget=-1: must be >= 0"),
    (["episodes.cso.prm=judge", "episodes.cso.prm_judge=prm"], "prm_judge='prm': needs judges.<that name> of "
                                                                 "kind process"),
    (["episodes.cso.prm=judge", "episodes.cso.prm_judge=prm", "+judges.prm.kind=process",
      "episodes.cso.separator=e"], "judges.prm.step_separator='\\n' differs from episodes.cso.separator='e'"),
])
def test_bad_cso_config_is_refused_before_anything_starts(overrides, message):
    with pytest.raises(ConfigError) as e:
        validate(compose(["schedule=[cso]", *overrides]))
    assert message in str(e.value)


class ScriptedContinuations:
    """A scripted policy: continuation texts in order (cycling), whatever the context; it records the contexts."""

    def __init__(self, tokenizer, texts):
        self.tokenizer, self.texts, self.contexts = tokenizer, texts, []
        self.sampling = SamplingConfig(n=1)

    def generate(self, prompts, sampling, seed):
        from actors.rollout.hf_backend import Sample

        self.contexts += prompts
        k = iter(range(10 ** 6))
        samples = [[Sample(ids := self.tokenizer(self.texts[next(k) % len(self.texts)],
                                                 add_special_tokens=False).input_ids, [0.0] * len(ids), "", "stop")
                    for _ in range(sampling.n)] for _ in prompts]
        return {"samples": samples, "tokens": sum(len(s.response_ids) for g in samples for s in g)}


def _episode(**cso):
    """A CSOEpisode on a local scorer (the stepwise_sum environment in this process) instead of the fleet."""
    from cluster.episodes.cso.episode import CSOEpisode

    env = _env()
    ep = CSOEpisode.__new__(CSOEpisode)
    ep.cc = CSOConfig(**cso)
    ep.sep_ids = None
    ep.ctx = SimpleNamespace(env=SimpleNamespace(
        score=lambda items: ([env.score(i["data"], i["response"]) for i in items], {})))
    return ep, env


def test_monte_carlo_step_values_on_a_scripted_policy():
    """Each step's value: the success fraction of the policy's continuations from prompt + the ids up to the step
    (the scored text is the prefix and the continuation); the last step's value is the outcome, not sampled."""
    from cluster.episodes.cso.episode import Failed

    tok = build_char_tokenizer()
    ep, _ = _episode(mc_samples=4)
    inst = {"data": {"terms": [3, 5, 2]}, "prompt": "p"}
    ids = tok("3 + 5 = 8\n8 + 2 = 11\nAnswer: 11", add_special_tokens=False).input_ids
    steps = split_steps(ids, tok, "\n")
    assert len(steps) == 3
    f = Failed(0, inst, [7, 8], ids, steps)
    policy = ScriptedContinuations(tok, ["Answer: 10", "Answer: 9", "Answer: 10", "Answer: 10"])
    counts, tokens = {"mc": 0}, {"mc": 0}
    ep._mc_scores(policy, [f], seed=0, counts=counts, tokens=tokens)
    assert f.scores == [0.75, 0.75, 0.0]
    assert counts["mc"] == 2 * 4  # the last step needs no continuations
    assert policy.contexts == [[7, 8] + ids[:steps[0][1]], [7, 8] + ids[:steps[1][1]]]

    # a prefix that already holds the (wrong) answer: no continuation can change the outcome
    policy = ScriptedContinuations(tok, ["Answer: 10"])
    ids = tok("Answer: 12\nAnswer: 10", add_special_tokens=False).input_ids
    f = Failed(0, inst, [7], ids, split_steps(ids, tok, "\n"))
    ep._mc_scores(policy, [f], seed=0, counts=counts, tokens=tokens)
    assert f.scores == [0.0, 0.0]


def test_the_expert_s_proposal_is_its_first_step_ending_with_the_separator():
    tok = build_char_tokenizer()
    ep, _ = _episode()
    enc = lambda t: tok(t, add_special_tokens=False).input_ids
    assert ep._first_step(tok, enc("8 + 2 = 10\nAnswer: 10")) == enc("8 + 2 = 10\n")
    assert ep._first_step(tok, enc("8 + 2 = 10")) == enc("8 + 2 = 10\n")  # stopped without one: added
    assert ep._first_step(tok, enc("\n\n8 + 2 = 10\nx")) == enc("\n\n8 + 2 = 10\n")  # blank lines join the step
    assert ep._first_step(tok, []) == []


def test_the_oracle_expert_proposes_the_reference_step_at_the_same_index():
    from cluster.episodes.cso.episode import Failed

    tok = build_char_tokenizer()
    ep, env = _episode(expert="oracle")
    inst = {"data": {"terms": [3, 5, 2]}, "reference": env.reference({"terms": [3, 5, 2]})}
    ep.ctx.policy = lambda role: SimpleNamespace(tokenizer=tok)
    ids = tok("3 + 5 = 8\n8 + 2 = 11\nAnswer: 11\nmore", add_special_tokens=False).input_ids
    f = Failed(0, inst, [], ids, split_steps(ids, tok, "\n"))
    decode = lambda i: tok.decode(ep._oracle_step(f, i))
    assert [decode(i) for i in range(4)] == ["3 + 5 = 8\n", "8 + 2 = 10\n", "Answer: 10", "Answer: 10"]


def test_an_expansion_is_charged_the_sequences_it_generates():
    """rollout_budget counts sequences: Monte-Carlo continuations from every step but the last, the expert's
    proposals and the policy's branches from each. The scripted expert proposes its one reference step per site
    and generates nothing, so an oracle expansion is charged one branch set per site, not `alternatives`."""
    policy, _ = _episode(alternatives=3, mc_samples=2, branch_samples=2, candidates=1)
    oracle, _ = _episode(alternatives=3, mc_samples=2, branch_samples=2, candidates=1, expert="oracle")
    assert policy._cost(4, use_mc=True) == 3 * 2 + 3 + 3 * 2
    assert oracle._cost(4, use_mc=True) == 3 * 2 + 0 + 1 * 2
    assert policy._cost(4, use_mc=False) == 3 + 3 * 2  # a trained PRM scores without continuations


# -- end to end ----------------------------------------------------------------------------------------------------
BASE = [f"env.name={HERE / 'cso_ok_env.py'}", "schedule=[cso]", "episodes.cso.expert=oracle",
        "episodes.cso.separator=e", "episodes.cso.candidates=2", "episodes.cso.mc_samples=2",
        "episodes.cso.branch_samples=2", "episodes.cso.prm=trained", "episodes.cso.prm_warmup_steps=1",
        "episodes.cso.prm_heldout_every=2", "episodes.cso.prm_epochs=2", "algorithm.prompts_per_step=2",
        "rollout.sampling.n=2", "rollout.sampling.max_new_tokens=24", "learner.lr=1e-3"]


def _records(run):
    return [json.loads(ln) for ln in (run / "episodes" / "cso.jsonl").read_text().splitlines()]


@pytest.mark.e2e
def test_cso_end_to_end_with_a_trained_prm_and_an_exact_resume(tmp_path):
    from tests.cluster.test_e2e import metrics, train

    full, part = tmp_path / "full", tmp_path / "part"
    train(full, "steps=4", "save_every=3", "seed=5", *BASE)
    rows = metrics(full)
    assert [r["kind"] for r in rows] == ["cso"] * 4
    first = rows[0]
    # step 0 scores by Monte-Carlo values: the tiny model fails every task, the oracle's "OK" flips each one
    assert first["cso/prm_mc"] == 1.0 and first["cso/failed_mined"] == 4 and first["reward/mean"] == 0.0
    assert first["cso/flips"] == first["cso/alternatives"] >= first["cso/failed_mined"]
    assert first["cso/pairs_kept"] == first["cso/alternatives"] and "dpo/margin" in first
    assert first["rollouts/total"] == sum(first[f"rollouts/{k}"] for k in ("mine", "mc", "expert", "branch"))
    assert first["rollouts/mine"] == 4 and first["rollouts/expert"] == 0  # the oracle generates nothing
    assert first["rollouts/branch"] == 2 * first["cso/alternatives"]
    assert first["policy_version"] == 1 and first["dpo/accuracy"] >= 0.0
    # then the PRM trained on those values scores the steps: no more Monte-Carlo continuations
    assert first["prm/train_examples"] > 0 and first["prm/heldout_examples"] > 0
    agreement = json.loads((full / "cso_prm.json").read_text())
    assert agreement["heldout_examples"] == first["prm/heldout_examples"] and 0.0 <= agreement["mae"] <= 1.0
    assert 0.0 <= agreement["sign_accuracy_constant"] <= 1.0 and "prm/sign_accuracy_constant" in first
    assert all(r["cso/prm_mc"] == 0.0 and r["rollouts/mc"] == 0 for r in rows[1:])
    # every failed trajectory's record: steps, scores, the critical ones, each alternative and its branches
    recs = _records(full)
    assert len(recs) == sum(r["cso/failed_mined"] for r in rows)
    for r in recs:
        assert len(r["steps"]) == len(r["scores"]) and "".join(r["steps"]) == r["response"]
        assert r["candidates"] == sorted(range(len(r["scores"])), key=lambda i: (r["scores"][i], i))[:2]
        for a in r["alternatives"]:
            assert a["text"] == "OK" and len(a["outcomes"]) == 2 and a["outcomes"] == [1.0, 1.0]
    step0 = [r for r in recs if r["step"] == 0]
    assert all(s == 0.0 for r in step0 for s in r["scores"])  # no continuation writes OK
    assert all(a["score"] == 1.0 and a["kept"] for r in step0 for a in r["alternatives"])
    prm = full / "checkpoints" / "step_000003" / "episodes" / "cso" / "prm"
    assert (prm / "config.json").is_file()  # the trained PRM travels with the checkpoint

    # resume from step 3: the same step, PRM scores and pairs as the uninterrupted run
    shutil.copytree(full, part, ignore=shutil.ignore_patterns("step_000004"))
    (part / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    train(part, "steps=4", "save_every=3", "seed=5", f"resume={part}", *BASE)
    b = metrics(part)
    assert [r["step"] for r in b] == list(range(4))
    for key in ("reward/mean", "cso/failed_mined", "cso/alternatives", "cso/pairs_kept", "rollouts/total", "loss",
                "policy_version"):
        assert [r.get(key) for r in rows[3:]] == pytest.approx([r.get(key) for r in b[3:]], abs=1e-6), key
    assert _rounded(_records(part)) == _rounded(recs)  # PRM scores too: the trained PRM came back with the checkpoint


def _rounded(x):
    if isinstance(x, float):
        return round(x, 5)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return [_rounded(v) for v in x] if isinstance(x, list) else x


@pytest.mark.e2e
def test_cso_with_a_process_judge_as_the_prm(tmp_path):
    """prm=judge: a process judge of the run (here the tiny sequence classifier) scores every step and every
    alternative; no Monte-Carlo continuations are drawn."""
    from tests.cluster.test_e2e import metrics, train

    run = tmp_path / "judge"
    base = [o for o in BASE if not o.startswith("episodes.cso.prm")]
    train(run, "steps=1", "save_every=0", *base, "episodes.cso.prm=judge", "episodes.cso.prm_judge=prm",
          "+judges.prm.kind=process", "+judges.prm.step_separator=e")
    (row,) = metrics(run)
    assert row["cso/prm_mc"] == 0.0 and row["rollouts/mc"] == 0 and row["cso/failed_mined"] == 4
    recs = _records(run)
    scores = [s for r in recs for s in r["scores"]] + [a["score"] for r in recs for a in r["alternatives"]]
    assert scores and all(0.0 < s < 1.0 for s in scores)  # the classifier's sigmoid, not success fractions
    assert len(set(scores)) > 1


def test_the_policy_expert_proposes_distinct_first_steps_at_its_own_temperature():
    """expert=policy: k samples from the same prefix by the expert role's policy at expert_temperature, stopped at
    the separator; each cut to its first step; duplicates and the original step dropped."""
    from cluster.episodes.cso.episode import Failed

    tok = build_char_tokenizer()
    ep, _ = _episode(expert="policy", alternatives=4, expert_temperature=1.3, step_max_new_tokens=9)
    expert = ScriptedContinuations(tok, ["8 + 2 = 10\nAnswer: 10", "8 + 2 = 11\n", "8 + 2 = 10\n", "8 + 2 = 9"])
    seen = []
    generate = expert.generate
    expert.generate = lambda prompts, sampling, seed: seen.append(sampling) or generate(prompts, sampling, seed)
    ep.ctx.policy = lambda role: expert if role == "expert" else SimpleNamespace(tokenizer=tok)
    ids = tok("3 + 5 = 8\n8 + 2 = 11\nAnswer: 11", add_special_tokens=False).input_ids
    f = Failed(0, {"data": {"terms": [3, 5, 2]}}, [7], ids, split_steps(ids, tok, "\n"), candidates=[1])
    counts, tokens = {"expert": 0}, {"expert": 0}
    ep._alternatives(ep.ctx, [f], seed=0, counts=counts, tokens=tokens)
    assert [a["text"] for a in f.alternatives] == ["8 + 2 = 10\n", "8 + 2 = 9\n"]  # "8 + 2 = 11\n" is the original
    assert all(a["step"] == 1 for a in f.alternatives) and counts["expert"] == 4
    assert expert.contexts == [[7] + ids[:f.steps[1][0]]]  # the prefix before the critical step
    (s,) = seen
    assert (s.n, s.temperature, s.max_new_tokens, list(s.stop)) == (4, 1.3, 9, ["\n"])
