"""Rollout workers on a real Ray cluster: a worker that dies is restarted with the current weights and
its prompts re-issued; the samples equal those of an uninterrupted pool."""
from types import SimpleNamespace

import pytest
import ray
import torch

from actors.weights import pack_state_dict
from cluster.config.schema import AlgorithmConfig, LearnerConfig, ModelConfig, RolloutConfig, SamplingConfig
from cluster.runtime.learner_group import LearnerGroup
from cluster.runtime.rollout_pool import RolloutPool
from trainers.models import load_causal_lm


def pool(tiny_model_path, workers=2):
    cfg = SimpleNamespace(rollout=RolloutConfig(num_workers=workers, cpus_per_worker=0.5, threads=1),
                          model=ModelConfig(), learner=LearnerConfig())
    return RolloutPool(cfg, tiny_model_path, "PACK")


def test_dead_worker_restarted_with_current_weights_and_prompts_reissued(ray_local, tiny_model_path):
    sampling = SamplingConfig(n=2, max_new_tokens=8)
    prompts = [[13 + i, 14, 15, 16] for i in range(6)]
    state = load_causal_lm(tiny_model_path).state_dict()
    torch.manual_seed(0)
    new = {k: v + 0.3 * torch.randn_like(v) for k, v in state.items()}
    ref = ray.put(pack_state_dict(new, version=1))

    steady = pool(tiny_model_path)
    steady.push_weights(ref, 1)
    expected = steady.generate(prompts, sampling, seed=5)

    flaky = pool(tiny_model_path)
    flaky.push_weights(ref, 1)
    ray.kill(flaky.workers[1])  # dies between steps, its prompts are part of the next call
    got = flaky.generate(prompts, sampling, seed=5)
    assert got["restarts"] == 1
    assert len(got["samples"]) == len(prompts) and all(len(g) == 2 for g in got["samples"])
    assert [[s.response_ids for s in g] for g in got["samples"]] == \
        [[s.response_ids for s in g] for g in expected["samples"]]  # same weights, same seeds, nothing twice
    empty = steady.generate([], sampling, seed=5)  # nothing to generate: no call, an empty answer
    assert empty["samples"] == [] and empty["tokens"] == 0 and empty["version"] == 1
    for p in (steady, flaky):
        for w in p.workers:
            ray.kill(w)
        ray.util.remove_placement_group(p.pg)


def test_weight_push_survives_a_dead_worker(ray_local, tiny_model_path):
    p = pool(tiny_model_path)
    state = load_causal_lm(tiny_model_path).state_dict()
    ray.kill(p.workers[0])
    info = p.push_weights(ray.put(pack_state_dict(state, version=1)), 1)
    assert info["bytes"] > 0 and p.version == 1 and p.restarts == 1
    assert [ray.get(w.ready.remote())["version"] for w in p.workers] == [1, 1]
    for w in p.workers:
        ray.kill(w)
    ray.util.remove_placement_group(p.pg)



def test_a_hosted_engine_that_dies_stops_the_run_naming_why(ray_local, tiny_model_path):
    """rollout.placement=learner: the engine lives in learner rank 0 (a real HybridWorker); the pool has no
    worker of its own to restart, so a dead host is an error that says what to do, not a new worker on a bundle
    the pool never reserved."""
    cfg = SimpleNamespace(rollout=RolloutConfig(placement="learner", threads=1),
                          learner=LearnerConfig(cpus_per_rank=0.5, threads=1), algorithm=AlgorithmConfig(),
                          model=ModelConfig())
    learners = LearnerGroup(cfg, tiny_model_path, "PACK", host_rollout={"backend": "hf"})
    hosted = RolloutPool(cfg, tiny_model_path, "PACK", hosts=[learners.hybrid])
    assert hosted.pg is None and hosted.transport == "object_store"
    sampling = SamplingConfig(n=2, max_new_tokens=4)
    assert [len(g) for g in hosted.generate([[13, 14], [15, 16]], sampling, seed=0)["samples"]] == [2, 2]
    assert hosted.sync(learners, 1)["bytes"] > 0  # rank 0 packs, the engine in its own process loads
    ray.kill(learners.hybrid)
    with pytest.raises(RuntimeError, match="died with its learner.*resume from the last checkpoint"):
        hosted.generate([[13, 14]], sampling, seed=0)
    ray.util.remove_placement_group(learners.pg)
