"""rollout.weight_sync=broadcast on a real Ray cluster: learner rank 0 of a real two-rank DeepSpeed group
broadcasts over gloo (NCCL on GPU) to two rollout workers; replaced workers rejoin a rebuilt group."""
from types import SimpleNamespace

import ray
import torch

from actors.weights import unpack_state_dict
from cluster.config.schema import AlgorithmConfig, LearnerConfig, ModelConfig, RolloutConfig, SamplingConfig
from cluster.runtime.learner_group import LearnerGroup
from cluster.runtime.rollout_pool import RolloutPool
from trainers.batch import Trajectory


def _cfg(lora_rank=0):
    learner = LearnerConfig(world_size=2, cpus_per_rank=0.5, lr=1e-2)
    learner.lora.rank = lora_rank
    return SimpleNamespace(
        rollout=RolloutConfig(num_workers=2, cpus_per_worker=0.5, threads=1, weight_sync="broadcast"),
        learner=learner, algorithm=AlgorithmConfig(prompts_per_step=2), model=ModelConfig())


def _batch(step):
    torch.manual_seed(step)
    trajectories = [Trajectory(prompt_ids=[13, 14, 15], response_ids=torch.randint(20, 60, (6,)).tolist(),
                               behaviour_logprobs=[-3.0] * 6, group_id=i // 2, advantage=(-1.0) ** i)
                    for i in range(4)]
    return trajectories


def _learner_fingerprint(learners, version):
    msg, buf = ray.get(learners.weights_ref(version))
    return float(sum(v.double().sum() for v in unpack_state_dict(msg, buf).values()))


def _worker_fingerprints(pool):
    return [ray.get(w.weights_fingerprint.remote()) for w in pool.workers]


def test_broadcast_sync_and_rebuilt_group(ray_local, tiny_model_path):
    cfg = _cfg()
    pool = RolloutPool(cfg, tiny_model_path, "PACK")
    learners = LearnerGroup(cfg, tiny_model_path, "PACK")
    start = _worker_fingerprints(pool)

    learners.update(_batch(1), "grpo", 1.0, pad_id=0)
    info = pool.sync(learners, 1)
    assert info["transport"] == "broadcast" and info["bytes"] > 0 and pool.group_ready
    want = _learner_fingerprint(learners, 1)
    assert want != start[0] and _worker_fingerprints(pool) == [want, want]
    sampling = SamplingConfig(n=1, max_new_tokens=4, temperature=0.0)
    assert pool.generate([[13, 14]] * 2, sampling, seed=0)["samples"]  # every answer is version 1

    ray.kill(pool.workers[1])  # dies between syncs: replaced, and the group rebuilt with it
    learners.update(_batch(2), "grpo", 1.0, pad_id=0)
    pool.sync(learners, 2)
    want = _learner_fingerprint(learners, 2)
    assert pool.restarts == 1 and _worker_fingerprints(pool) == [want, want]
    assert [ray.get(w.ready.remote())["version"] for w in pool.workers] == [2, 2]

    ray.kill(pool.workers[0])  # dies before a generate: restarted with version 2 from the learners
    out = pool.generate([[13, 14]] * 2, sampling, seed=0)
    assert pool.restarts == 2 and len(out["samples"]) == 2
    assert _worker_fingerprints(pool) == [want, want]
    learners.update(_batch(3), "grpo", 1.0, pad_id=0)
    pool.sync(learners, 3)  # and the next broadcast includes it
    assert _worker_fingerprints(pool) == [_learner_fingerprint(learners, 3)] * 2
    for w in pool.workers + learners.ranks:
        ray.kill(w)
    for pg in (pool.pg, learners.pg):
        ray.util.remove_placement_group(pg)
