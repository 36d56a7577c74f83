"""Memory-agent episodes: config checks and the warm-up schedule without a cluster; then end to end on the real
stack (embedded Ray on loopback, DeepSpeed over gloo, the transformers rollout worker, the tiny model with a long
position range): the scripted expert's sft warm start, the agent's GRPO episodes, the MemAgent-style baseline,
held-out before/after with both baselines, transcripts and stores with checkpoints, `evoforge replay`, and a
resumed run that reproduces the uninterrupted one, memory stores included."""
import json
import shutil

import pytest

from cluster.episodes.memory.agent_loop import STOP_REASONS
from cluster.evaluate import compose_config as compose
from cluster.episodes.schedule import Schedule
from cluster.config.errors import ConfigError
from cluster.runconfig.checks import validate
from tests.conftest import evoforge


def test_warmup_kinds_run_once_then_the_pattern_repeats():
    s = Schedule(["memory_agent", "memagent"], warmup=["memory_expert", "memory_expert"])
    assert [s.kind(i) for i in range(6)] == ["memory_expert", "memory_expert", "memory_agent", "memagent",
                                             "memory_agent", "memagent"]
    assert s.kinds() == ["memory_expert", "memory_agent", "memagent"]


@pytest.mark.parametrize("overrides, message", [
    (["episodes.memory.max_context=4096"], "episodes.memory.max_context=4096 exceeds the agent's "
                                           "rollout.max_model_len=2048"),
    (["episodes.memory.kinds=[needle,riddle]"], "episodes.memory.kinds=['needle', 'riddle']: use some of needle"),
    (["episodes.memory.lengths=[100]"], "document lengths in words, each in 200..200000"),
    (["episodes.memory.heldout_baselines=[oracle]"], "unknown 'oracle': use truncated, memagent"),
    (["episodes.memory.expert_overlap=300"], "need chunk size >= 16 and 0 <= overlap < chunk size"),
    (["episodes.memory.tool_timeout_s=0"], "episodes.memory.tool_timeout_s=0.0: must be > 0"),
    (["+learner.objective_lr.sft=-1"], "learner.objective_lr.sft=-1"),
    (["schedule_warmup=[memory_expertt]"], "schedule: unknown episode kind 'memory_expertt'"),
])
def test_bad_memory_config_is_refused_before_anything_starts(overrides, message):
    with pytest.raises(ConfigError) as e:
        validate(compose(["schedule=[memory_agent]", *overrides]))
    assert message in str(e.value)


def test_reward_is_the_answer_s_accuracy_minus_the_peak_context_penalty():
    from types import SimpleNamespace

    from cluster.episodes.memory.episode import MemoryAgentEpisode

    ep = MemoryAgentEpisode.__new__(MemoryAgentEpisode)  # reward() reads only the memory config
    ep.mc = SimpleNamespace(context_penalty=0.5, max_context=1000)

    def episode(stop, answer, peak):
        return SimpleNamespace(stop=stop, answer=answer, task={"answer": "4817"}, ledger=SimpleNamespace(peak=peak))
    assert ep.reward(episode("finish", "The access code is 4817.", 400)) == pytest.approx(1 - 0.5 * 0.4)
    assert ep.reward(episode("finish", "4871", 400)) == pytest.approx(-0.2)
    assert ep.reward(episode("max_turns", "4817", 1000)) == pytest.approx(-0.5)  # no finish: no answer counts
    ep.mc.context_penalty = 0.0
    assert ep.reward(episode("finish", "4817", 1000)) == 1.0


# -- end to end ----------------------------------------------------------------------------------------------------
BASE = ["model.tiny_max_positions=8192", "rollout.max_model_len=8192", "schedule_warmup=[memory_expert]",
        "schedule=[memory_agent,memagent]", "episodes.memory.lengths=[300,600]", "episodes.memory.max_context=6000",
        "episodes.memory.heldout_tasks=3", "episodes.memory.expert_chunk_size=60", "episodes.memory.expert_overlap=10",
        "algorithm.prompts_per_step=2", "rollout.sampling.n=2", "episodes.memory.turn_max_new_tokens=48",
        "episodes.memory.memagent_chunk_words=150", "episodes.memory.memagent_max_chunks=3",
        "+learner.objective_lr.sft=0.002"]


def _records(run, kind="memory_agent"):
    return [json.loads(ln) for ln in (run / "episodes" / f"{kind}.jsonl").read_text().splitlines()]


@pytest.mark.e2e
def test_memory_episodes_end_to_end_with_replay_and_an_exact_resume(tmp_path):
    from tests.cluster.test_e2e import metrics, train

    full, part = tmp_path / "full", tmp_path / "part"
    train(full, "steps=4", "save_every=3", "seed=3", *BASE)
    rows = metrics(full)
    assert [r["kind"] for r in rows] == ["memory_expert", "memory_agent", "memagent", "memory_agent"]
    expert = rows[0]
    assert expert["agent/accuracy"] == expert["agent/exact_match"] == 1.0 and expert["stop/finish"] == 1.0  # the expert answers every task
    assert expert["sft/nll"] > 0 and expert["lr"] == pytest.approx(0.002)  # sft at its own learning rate
    # the expert's episodes: every call ran, each read chunk was deleted, every deletion made a segment
    ex = _records(full, "memory_expert")
    assert len(ex) == 2 and all(r["stop"] == "finish" and r["reward"] == 1.0 and r["errors"] == 0 for r in ex)
    assert all(r["deletions"] and r["store"]["deleted"] == [d["msg"] for d in r["deletions"]] for r in ex)
    assert expert["agent/segments_per_episode"] == sum(len(r["deletions"]) + 1 for r in ex) / 2
    # the agent's episodes: 2 tasks x 2 samples per memory_agent step, stored with transcript and memory
    recs = _records(full)
    assert len(recs) == 2 * 4 and {r["step"] for r in recs} == {1, 3}
    for r in recs:
        assert r["stop"] in STOP_REASONS and len(r["turns"]) >= 1
        assert set(r["store"]) == {"documents", "loaded", "index", "notes", "deleted"}
        assert r["store"]["documents"]["doc"] == {"words": r["task"]["length"]}  # regenerated from the task id
    assert len(_records(full, "memagent")) == 4
    # held-out: the agent and both baselines, on the same 3 tasks, before and after
    for tag in ("before", "after"):
        ev = json.loads((full / f"memory_eval_{tag}.json").read_text())
        methods = [r["method"] for r in ev["rows"]]
        assert methods.count("tools") == methods.count("truncated") == methods.count("memagent") == 3
        assert all(r["gold"] and 0.0 <= r["f1"] <= 1.0 for r in ev["rows"])
    assert (full / "plots" / "memory_heldout.png").is_file() and (full / "plots" / "memory_training.png").is_file()
    # transcripts and stores travel with each checkpoint
    saved = full / "checkpoints" / "step_000003" / "episodes" / "memory_agent" / "memory_agent.jsonl"
    assert [json.loads(ln) for ln in saved.read_text().splitlines()] == recs[:4]

    # replay: the listing, one transcript, a checkpoint, a wrong episode number
    listing = evoforge("replay", str(full))
    assert listing.returncode == 0 and len(listing.stdout.splitlines()) == 1 + len(recs)
    one = evoforge("replay", str(full), "--episode", "5")
    assert one.returncode == 0
    r = recs[5]
    assert f"question: {r['task']['question']}" in one.stdout and f"stop: {r['stop']}" in one.stdout
    assert all(f"--- msg {t['msg']}" in one.stdout for t in r["turns"])
    exp = evoforge("replay", str(full / "checkpoints" / "step_000003"), "--kind", "memory_expert", "--episode", "0")
    assert exp.returncode == 0 and "deleted msg" in exp.stdout and "call: finish(" in exp.stdout
    held = evoforge("replay", str(full), "--kind", "heldout_after")
    assert held.returncode == 0 and len(held.stdout.splitlines()) == 1 + 3
    bad = evoforge("replay", str(full), "--episode", "99")
    assert bad.returncode == 2 and "the run has episodes 0..7" in bad.stderr

    # resume from step 3: the same step, transcripts and memory stores as the uninterrupted run
    shutil.copytree(full, part, ignore=shutil.ignore_patterns("step_000004"))
    (part / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    train(part, "steps=4", "save_every=3", "seed=3", f"resume={part}", *BASE)
    b = metrics(part)
    assert [r["step"] for r in b] == list(range(4))
    for key in ("reward/mean", "agent/turns", "agent/trained_tokens", "loss", "policy_version"):
        assert [r.get(key) for r in rows[3:]] == pytest.approx([r.get(key) for r in b[3:]], abs=1e-6), key
    assert _records(part) == recs and _records(part, "memagent") == _records(full, "memagent")
