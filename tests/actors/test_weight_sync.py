"""Versioned weight sync into a real RolloutWorker actor on a local Ray cluster."""
import numpy as np
import pytest
import ray
import torch

from actors.rollout_worker import RolloutWorker
from actors.weights import pack_state_dict, unpack_state_dict
from cluster.config.schema import SamplingConfig
from trainers.models import load_causal_lm


def test_pack_round_trip_mixed_dtypes():
    state = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64), "c": torch.randn(2).to(torch.bfloat16)}
    msg, buf = pack_state_dict(state, version=7)
    assert msg.version == 7 and msg.nbytes == buf.nbytes == 3 * 4 * 4 + 5 * 8 + 2 * 2
    back = unpack_state_dict(msg, buf)
    for k, v in state.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v)
    with pytest.raises(ValueError, match="manifest says"):
        unpack_state_dict(msg, np.zeros(3, dtype=np.uint8))


def _greedy(worker, prompt):
    out = ray.get(worker.generate.remote([prompt], SamplingConfig(n=1, temperature=0.0, max_new_tokens=8), 0))
    s = out["samples"][0][0]
    return out["version"], s.response_ids, s.logprobs


def test_versions_stamp_generations_and_refuse_stale(ray_local, tiny_model_path):
    worker = RolloutWorker.remote(0, tiny_model_path, "hf", "float32", 1)
    prompt = list(range(13, 30))
    v0, ids0, lp0 = _greedy(worker, prompt)
    assert v0 == 0 and len(ids0) > 0

    original = load_causal_lm(tiny_model_path).state_dict()
    torch.manual_seed(1)
    changed = {k: v + 0.5 * torch.randn_like(v) for k, v in original.items()}
    info = ray.get(worker.update_weights.remote(pack_state_dict(changed, version=1)))
    assert info["version"] == 1 and info["bytes"] == sum(v.numel() * 4 for v in original.values())
    v1, ids1, lp1 = _greedy(worker, prompt)
    assert v1 == 1 and (ids1 != ids0 or not np.allclose(lp1, lp0))

    # the worker's copy equals what was sent
    fingerprint = ray.get(worker.weights_fingerprint.remote())
    assert fingerprint == pytest.approx(float(sum(v.double().sum() for v in changed.values())), rel=1e-9)

    # a repeated or older version is refused and changes nothing
    with pytest.raises(ray.exceptions.RayTaskError, match="refusing version 1"):
        ray.get(worker.update_weights.remote(pack_state_dict(original, version=1)))
    assert _greedy(worker, prompt)[:2] == (1, ids1)

    # pushing the old weights back (as a newer version) restores the old outputs exactly
    ray.get(worker.update_weights.remote(pack_state_dict(original, version=2)))
    v2, ids2, lp2 = _greedy(worker, prompt)
    assert v2 == 2 and ids2 == ids0 and lp2 == pytest.approx(lp0, abs=1e-6)


def test_mismatched_weights_rejected(ray_local, tiny_model_path):
    worker = RolloutWorker.remote(0, tiny_model_path, "hf", "float32", 1)
    bad = {"not.a.weight": torch.zeros(2)}
    with pytest.raises(ray.exceptions.RayTaskError, match="weights do not match"):
        ray.get(worker.update_weights.remote(pack_state_dict(bad, version=1)))
    assert ray.get(worker.ready.remote())["version"] == 0
