"""The multi-turn agent loop without Ray: the tiny model through the HF engine, and scripted turns.

The ledger invariant is checked against the real engine: for every generation, the ids the engine received,
followed by what it generated, are exactly a prefix of one learner row, and the learner's own logprobs of the
generated tokens equal the engine's behaviour logprobs."""
import os
import time
from types import SimpleNamespace

import pytest
import torch

from actors.rollout.hf_backend import HFBackend, Sample
from cluster.episodes.memory.agent_loop import AgentEpisode, AgentLoop, LoopLimits, TurnFormat
from envs.tools import memory_tools
from envs.tools.expert import ExpertAgent
from envs.tools.memory_tools import AgentView
from envs.tools.protocol import format_call
from envs.tools.store import MemoryStore
from trainers.batch import Trajectory, collate
from trainers.ledger import TokenLedger
from trainers.models import prepare_model

DOC = " ".join(f"w{i}" for i in range(300)) + " The vault code of Orlinde is 5521. " + \
      " ".join(f"z{i}" for i in range(300))
TASK = {"id": "needle-test", "kind": "needle", "question": "What is the vault code of Orlinde?", "answer": "5521",
        "documents": {"doc": DOC}, "length": len(DOC.split()),
        "facts": [{"sentence": "The vault code of Orlinde is 5521.", "keyword": "Orlinde", "word_offset": 300}]}


@pytest.fixture(scope="module")
def engine():
    cfg = SimpleNamespace(name="tiny", cache_dir=os.environ["EVOFORGE_CACHE"], tiny_arch="llama", tiny_hidden=64,
                          tiny_layers=2, tiny_heads=2, tiny_kv_heads=1, tiny_intermediate=128, tiny_seed=0,
                          tiny_max_positions=4096)
    return HFBackend(prepare_model(cfg))


def episode(tok, group=0, task=TASK) -> AgentEpisode:
    prompt = tok(f"Question: {task['question']}\n", add_special_tokens=False).input_ids
    return AgentEpisode(task, MemoryStore(documents=dict(task["documents"])), TokenLedger(prompt), group)


def scripted(tok, texts_per_episode):
    """act() answering each episode with its next scripted text (ids = the text's ids + end of turn)."""
    counters = {}

    def act(live, contexts):
        out = []
        for e in live:
            k = counters.get(id(e), 0)
            counters[id(e)] = k + 1
            text = texts_per_episode[e.group][k]
            ids = tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id]
            out.append(Sample(ids, [-0.5] * len(ids), text, "stop"))
        return out
    return act


def expert_act(tok, limits):
    def act(live, contexts):
        out = []
        for e in live:
            view = AgentView(len(e.ledger), limits.max_context, e.ledger.turn + 1, limits.max_turns, e.labels())
            text = ExpertAgent(e.task, chunk_size=60, overlap=10).next_turn(e.store, e.history, view)
            ids = tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id]
            out.append(Sample(ids, [0.0] * len(ids), text, "stop"))
        return out
    return act


def rows_of(episodes):
    return [Trajectory(s.prompt_ids, s.response_ids, s.logprobs, loss_mask=s.loss_mask)
            for e in episodes for s in e.ledger.finish()]


def test_real_engine_ids_are_exactly_what_the_learner_trains_on(engine):
    tok = engine.tokenizer
    limits = LoopLimits(max_turns=4, max_context=4096, max_new_tokens=24, max_malformed=3)
    loop = AgentLoop(TurnFormat(tok, chat_template=False), limits)
    loop.engine_inputs = []
    sampling = SimpleNamespace(n=1, max_new_tokens=24, temperature=1.0, top_p=1.0, top_k=0, min_p=0.0,
                               cuts_fraction=0.0, stop=[])
    generated = []

    def act(live, contexts):
        out = engine.generate(contexts, sampling, seed=len(generated))
        samples = [g[0] for g in out]
        generated.extend(zip(contexts, samples))
        return samples
    episodes = [episode(tok, g) for g in range(3)]
    loop.run(episodes, act)
    loop.close()
    assert all(e.stop == "malformed" for e in episodes)  # a random model writes no valid call
    assert [c for _, c in loop.engine_inputs] == [c for c, _ in generated]
    rows = rows_of(episodes)
    assert len(rows) == 3  # no deletion: one segment per episode
    batch = collate(rows, tok.pad_token_id)
    flat = [r.prompt_ids + r.response_ids for r in rows]
    with torch.no_grad():
        logits = engine.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(2, batch.input_ids[:, 1:, None]).squeeze(2)
    for context, sample in generated:
        seen = context + sample.response_ids
        (r,) = [i for i, f in enumerate(flat) if f[:len(seen)] == seen]  # exactly one learner row holds it
        start = len(context)
        cols = range(start - 1, start - 1 + len(sample.response_ids))
        assert [int(batch.loss_mask[r, c]) for c in cols] == [1] * len(sample.response_ids)
        learner = [logp[r, c].item() for c in cols]
        assert learner == pytest.approx(sample.logprobs, abs=2e-4)
    # everything that is not a generated token has mask exactly 0
    assert batch.loss_mask.sum().item() == sum(len(s.response_ids) for _, s in generated)


def test_deletions_split_episodes_into_segments_that_hold_what_the_model_saw(engine):
    tok = engine.tokenizer
    limits = LoopLimits(max_turns=20, max_context=8192, max_new_tokens=200)
    loop = AgentLoop(TurnFormat(tok, chat_template=False), limits)
    loop.engine_inputs = []
    contexts_seen = []
    act = expert_act(tok, limits)

    def recording(live, contexts):
        samples = act(live, contexts)
        contexts_seen.extend((e.group, c, s.response_ids) for e, c, s in zip(live, contexts, samples))
        return samples
    episodes = [episode(tok, g) for g in range(2)]
    loop.run(episodes, recording)
    loop.close()
    for e in episodes:
        assert e.stop == "finish" and e.answer == "5521"
        assert e.deletions, "the expert deletes the chunks it has read"
        assert [d["msg"] for d in e.deletions] == e.store.deleted == e.ledger.deleted
    segments = [e.ledger.finish() for e in episodes]
    assert [len(s) for s in segments] == [len(e.deletions) + 1 for e in episodes]
    for g, context, ids in contexts_seen:  # every turn is trained in exactly one segment of its episode
        holders = [s for s in segments[g] if (s.prompt_ids + s.response_ids)[:len(context) + len(ids)] == context + ids
                   and len(s.prompt_ids) <= len(context)]  # (later segments may hold it in their prompt, untrained)
        assert len(holders) == 1
        start = len(context) - len(holders[0].prompt_ids)
        assert holders[0].loss_mask[start:start + len(ids)] == [1] * len(ids)
    # a later segment's prompt holds the stub, not the deleted chunk text
    chunk_text = tok("The vault code of Orlinde is 5521.", add_special_tokens=False).input_ids
    last = episodes[0].ledger.segments[-1]
    prompt = tok.decode(last.prompt_ids)
    assert "deleted: readChunk" in prompt
    assert tok.decode(chunk_text) not in prompt.split("[msg")[0]  # not in the question part either


def test_malformed_calls_are_answered_counted_and_stop_only_their_episode(engine):
    tok = engine.tokenizer
    limits = LoopLimits(max_turns=6, max_context=4096, max_new_tokens=64, max_malformed=2)
    loop = AgentLoop(TurnFormat(tok, chat_template=False), limits)
    bad = ["no call here", '<tool_call>{"name": "readChunk", "arguments": {"chunk_id": 1</tool_call>']
    good = [format_call("checkBudget"), format_call("finish", answer="5521")]
    episodes = [episode(tok, 0), episode(tok, 1)]
    loop.run(episodes, scripted(tok, {0: bad, 1: good}))
    loop.close()
    broken, fine = episodes
    assert broken.stop == "malformed" and broken.malformed == 2 and len(broken.turns) == 2
    assert "no tool call" in broken.turns[0].output and "not valid JSON" in broken.turns[1].output
    assert fine.stop == "finish" and fine.answer == "5521" and fine.malformed == 0
    assert fine.turns[0].output.startswith("[msg 1] context: 109/4096 tokens")  # 45 + the call's 64 ids


def test_a_tool_that_overruns_its_time_limit_ends_its_episode(engine, monkeypatch):
    tok = engine.tokenizer

    def slow(store, view):
        time.sleep(1.0)
        return "late"
    monkeypatch.setitem(memory_tools.TOOLS, "checkBudget",
                        memory_tools.Tool("checkBudget", "slow", {}, slow))
    limits = LoopLimits(max_turns=6, max_context=4096, max_new_tokens=64, tool_timeout_s=0.2)
    loop = AgentLoop(TurnFormat(tok, chat_template=False), limits)
    episodes = [episode(tok, 0), episode(tok, 1)]
    t0 = time.perf_counter()
    loop.run(episodes, scripted(tok, {0: [format_call("checkBudget")], 1: [format_call("finish", answer="x")]}))
    loop.close()
    assert time.perf_counter() - t0 < 0.9  # the loop did not wait for the tool
    assert episodes[0].stop == "tool_timeout" and "timed out" in episodes[0].turns[0].output
    assert episodes[1].stop == "finish"


def test_turn_and_context_limits(engine):
    tok = engine.tokenizer
    loop = AgentLoop(TurnFormat(tok, chat_template=False), LoopLimits(max_turns=2, max_context=4096,
                                                                      max_new_tokens=64))
    e = episode(tok)
    loop.run([e], scripted(tok, {0: [format_call("checkBudget")] * 5}))
    assert e.stop == "max_turns" and len(e.turns) == 2
    short = AgentLoop(TurnFormat(tok, chat_template=False), LoopLimits(max_turns=9, max_context=120,
                                                                       max_new_tokens=64))
    e = episode(tok)
    short.run([e], scripted(tok, {0: [format_call("readNote")] * 9}))
    assert e.stop == "context_limit" and e.ledger.peak <= 120
    loop.close(), short.close()


def test_chat_template_observations_are_a_user_turn_after_the_model_s_end_of_turn():
    """SmolLM2's template: the tool output enters as the next user turn, then the assistant's header."""
    from trainers.models import load_tokenizer

    tok = load_tokenizer(prepare_model(SimpleNamespace(name="smollm2", cache_dir=os.environ["EVOFORGE_CACHE"])))
    fmt = TurnFormat(tok, chat_template=True)
    model_ids = tok("hi", add_special_tokens=False).input_ids + [tok.eos_token_id]
    obs = fmt.observation("[msg 1] <|im_end|> result", model_ids)
    text = tok.decode(obs)
    assert text.startswith("\n<|im_start|>user\n") and text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert obs.count(tok.eos_token_id) == 1  # tool output that looks like a special token stays text
    cut = fmt.observation("x", model_ids[:-1])  # a turn cut at max_new_tokens: its end-of-turn is added
    assert cut[0] == tok.eos_token_id
