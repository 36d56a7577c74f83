"""The transformers rollout backend: CUTS and Mixed-CUTS rows record the logprob of the distribution
they were actually drawn from."""
import math

import pytest

from actors.rollout.hf_backend import HFBackend
from cluster.config.schema import SamplingConfig


@pytest.fixture(scope="module")
def backend(tiny_model_path):
    return HFBackend(tiny_model_path)


def test_cuts_rows_record_log_one_over_set_size(backend):
    sampling = SamplingConfig(n=4, max_new_tokens=6, temperature=1.0, top_k=5, cuts_fraction=1.0)
    out = backend.generate([[13, 14, 15], [20, 21]], sampling, seed=3)
    for group in out:
        assert len(group) == 4 and all(s.cuts for s in group)
        for s in group:
            assert s.logprobs == pytest.approx([-math.log(5)] * len(s.response_ids), abs=1e-6)


def test_mixed_cuts_splits_each_group(backend):
    sampling = SamplingConfig(n=4, max_new_tokens=6, temperature=1.0, top_k=5, cuts_fraction=0.5)
    out = backend.generate([[13, 14, 15]], sampling, seed=3)
    assert [s.cuts for s in out[0]] == [False, False, True, True]
    standard = [lp for s in out[0] if not s.cuts for lp in s.logprobs]
    # the standard half records the truncated, temperature-scaled policy: not the uniform value
    assert all(lp <= 0 for lp in standard) and any(abs(lp + math.log(5)) > 1e-4 for lp in standard)


def test_standard_sampling_is_deterministic_per_seed(backend):
    sampling = SamplingConfig(n=2, max_new_tokens=8)
    a = backend.generate([[13, 14, 15]], sampling, seed=7)
    b = backend.generate([[13, 14, 15]], sampling, seed=7)
    assert [s.response_ids for s in a[0]] == [s.response_ids for s in b[0]]
    assert not any(s.cuts for s in a[0])


def test_a_branch_from_a_sampled_prefix_continues_it_exactly(backend):
    """CSO's branched rollouts: generating from prompt + the first k sampled ids continues that sample (greedy:
    the same remaining tokens and logprobs), so a branch's prefix is the original trajectory's."""
    prompt, greedy = [13, 14, 15], SamplingConfig(n=1, max_new_tokens=12, temperature=0.0)
    (whole,) = backend.generate([prompt], greedy, seed=0)[0]
    k = len(whole.response_ids) // 2
    assert k >= 1
    branched = SamplingConfig(n=1, max_new_tokens=12 - k, temperature=0.0)
    (rest,) = backend.generate([prompt + whole.response_ids[:k]], branched, seed=0)[0]
    assert rest.response_ids == whole.response_ids[k:]
    assert rest.logprobs == pytest.approx(whole.logprobs[k:], abs=1e-5)
