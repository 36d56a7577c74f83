"""CUTS inside vLLM: the V1 logits processor, its request settings, and (opt-in) a real engine."""
import math
import os
import pickle

import pytest
import torch

pytest.importorskip("vllm")

from actors.rollout import vllm_cuts  # noqa: E402
from actors.rollout.vllm_cuts import VLLM_CUTS_FQCN, snap_cuts_logprob, vllm_cuts_sampling_kwargs  # noqa: E402
from trainers.cuts import truncation_mask  # noqa: E402
from tests.trainers.test_cuts import chi2_critical_999, chi2_stat  # noqa: E402


def test_vllm_sampling_kwargs_and_snap():
    kw = vllm_cuts_sampling_kwargs(0.7, 20, 0.9, 0.05)
    assert kw["temperature"] == 1.0 and kw["top_k"] == 0 and kw["top_p"] == 1.0 and kw["min_p"] == 0.0
    assert kw["extra_args"] == {"cuts": True, "cuts_temperature": 0.7, "cuts_top_k": 20, "cuts_top_p": 0.9,
                                "cuts_min_p": 0.05}
    for size in (1, 2, 7, 1000, 151936):
        approx = float(torch.log_softmax(torch.zeros(size), -1)[0])
        assert snap_cuts_logprob(approx) == -math.log(size)
        snapped = snap_cuts_logprob(torch.tensor([approx]))
        assert torch.equal(snapped, torch.tensor([-math.log(size)], dtype=torch.float32))


def test_vllm_processor():
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality
    from vllm.v1.sample.logits_processor import _load_logitsprocs_by_fqcns

    cls = vllm_cuts.CUTSVLLMLogitsProcessor
    assert issubclass(cls, LogitsProcessor)
    assert _load_logitsprocs_by_fqcns([VLLM_CUTS_FQCN]) == [cls]
    assert pickle.loads(pickle.dumps(cls)) is cls

    cls.validate_params(SamplingParams(temperature=0.7, top_p=0.9))  # standard request: no checks
    cls.validate_params(SamplingParams(**vllm_cuts_sampling_kwargs(0.7, 5, 0.9, 0.0)))
    with pytest.raises(ValueError):
        cls.validate_params(SamplingParams(temperature=1.0, top_p=0.9, extra_args={"cuts": True}))
    with pytest.raises(ValueError):
        cls.validate_params(SamplingParams(**vllm_cuts_sampling_kwargs(0.0)))

    proc = cls(None, torch.device("cpu"), False)
    assert proc.is_argmax_invariant() is False
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]] * 3)
    assert torch.equal(proc.apply(logits.clone()), logits)  # nothing registered yet
    a = SamplingParams(**vllm_cuts_sampling_kwargs(top_k=2))
    b = SamplingParams(temperature=0.5)
    c = SamplingParams(**vllm_cuts_sampling_kwargs(temperature=0.5, top_p=0.9))
    proc.update_state(BatchUpdate(batch_size=3, removed=[], added=[(0, a, [1], []), (1, b, [1], []),
                                                                   (2, c, [1], [])], moved=[]))
    out = proc.apply(logits.clone())
    inf = -math.inf
    assert out.tolist() == [[0.0, 0.0, inf, inf], [2.0, 1.0, 0.0, -1.0], [0.0, 0.0, inf, inf]]
    # swap 0 <-> 1, remove 2
    proc.update_state(BatchUpdate(batch_size=2, removed=[2], added=[],
                                  moved=[(0, 1, MoveDirectionality.SWAP)]))
    out = proc.apply(logits[:2].clone())
    assert out.tolist() == [[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, inf, inf]]
    # a standard request replaces the CUTS one at index 1; a one-way move 1 -> 0 of nothing
    proc.update_state(BatchUpdate(batch_size=2, removed=[], added=[(1, b, [1], [])], moved=[]))
    assert torch.equal(proc.apply(logits[:2].clone()), logits[:2])
    proc.update_state(None)
    # uniform over the set through vLLM-style sampling of the processed logits
    proc.update_state(BatchUpdate(batch_size=1, removed=[], added=[(0, c, [1], [])], moved=[]))
    row = torch.randn(1, 30, generator=torch.Generator().manual_seed(5)) * 2
    processed = proc.apply(row.clone())
    mask = truncation_mask(row, 0.5, 0, 0.9, 0.0)
    assert torch.equal(torch.isfinite(processed), mask)
    lp = torch.log_softmax(processed, -1)[mask]  # vLLM's processed_logprobs for the sampled token
    assert all(snap_cuts_logprob(float(x)) == -math.log(int(mask.sum())) for x in lp)


@pytest.mark.e2e
@pytest.mark.skipif(os.environ.get("EVOFORGE_CUTS_VLLM_E2E") != "1",
                    reason="real vLLM engine (about a minute, 2 GiB); set EVOFORGE_CUTS_VLLM_E2E=1")
def test_vllm_engine_end_to_end(tmp_path):
    """A real vLLM LLM: the processor loads by FQCN in the engine process, a CUTS request is uniform
    over the set, its processed logprob snaps to -log |set|, a standard request shares the batch."""
    from transformers import AutoModelForCausalLM
    from vllm import LLM, SamplingParams

    from trainers.models import build_tiny_model

    # vLLM's CPU attention needs head_dim 32/64/...: hidden 128 with 2 heads
    path = str(build_tiny_model(tmp_path / "tiny", "llama", 128, 1, 2, 1, 128, 0))
    llm = LLM(model=path, dtype="float32", logits_processors=[VLLM_CUTS_FQCN], logprobs_mode="processed_logprobs",
              max_model_len=128, enforce_eager=True, seed=0, gpu_memory_utilization=0.08, max_num_seqs=256)
    prompt, cfg, n = [5, 17, 33, 8], dict(temperature=0.7, top_k=0, top_p=0.9, min_p=0.0), 2000
    cuts = SamplingParams(n=n, max_tokens=1, logprobs=0, seed=1, **vllm_cuts_sampling_kwargs(**cfg))
    std = SamplingParams(n=n, max_tokens=1, logprobs=0, seed=2, temperature=0.7, top_p=0.9)
    try:
        cuts_out, std_out = llm.generate([{"prompt_token_ids": prompt}] * 2, [cuts, std])
    finally:
        llm.llm_engine.engine_core.shutdown()  # inside the test, while pytest still captures its logs
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        mask = truncation_mask(model(torch.tensor([prompt])).logits[:, -1], **cfg)[0]
    size = int(mask.sum())
    toks = torch.tensor([c.token_ids[0] for c in cuts_out.outputs])
    counts = torch.bincount(toks, minlength=mask.numel())
    assert counts[~mask].sum() == 0
    assert chi2_stat(counts[mask], torch.full((size,), n / size)) < chi2_critical_999(size - 1)
    for c in cuts_out.outputs:
        assert snap_cuts_logprob(c.logprobs[0][c.token_ids[0]].logprob) == -math.log(size)
    assert len(std_out.outputs) == n


