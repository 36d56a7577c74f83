"""LearnerGroup on a real Ray cluster: two DeepSpeed ZeRO-2 ranks over gloo train grpo, dpo and sft on uneven
counts (a rank short of rows runs padding micro steps, gradient accumulation changes between updates), and
the gradient norm DeepSpeed reports for each update equals the norm of the global-loss gradient computed in
this process on the same weights: the plan's normalisers, padding, per-update accumulation and the rows left out
of a flat group are exact.
Then sequence_logprobs (policy and frozen reference) and a save/load round trip.

Needs Ray on loopback: run inside `unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' .venv/bin/python -m pytest`
(as `make test` does)."""
import math
import random
from types import SimpleNamespace

import pytest
import ray
import torch

from actors.weights import unpack_state_dict
from cluster.config.schema import AlgorithmConfig, LearnerConfig, ModelConfig, RolloutConfig
from cluster.runtime.learner_group import LearnerGroup
from trainers.batch import Trajectory
from trainers.models import load_causal_lm
from trainers.objectives import get_objective, response_logprob_sums


def _cfg():
    learner = LearnerConfig(world_size=2, cpus_per_rank=0.5, lr=1e-2, micro_batch_size=2)
    algorithm = AlgorithmConfig()
    algorithm.dpo.beta = 0.5
    return SimpleNamespace(rollout=RolloutConfig(), learner=learner, algorithm=algorithm, model=ModelConfig())


def _samples(n, seed, pairs=False, behaviour=True):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        resp = [rng.randrange(3, 90) for _ in range(rng.randrange(2, 7))]
        out.append(Trajectory(prompt_ids=[rng.randrange(3, 90) for _ in range(3)], response_ids=resp,
                              behaviour_logprobs=[-math.log(99) + rng.uniform(-0.1, 0.1) for _ in resp] if behaviour else [],
                              group_id=i // 2, advantage=rng.uniform(-1, 1),
                              pair_id=i // 2 if pairs else None, chosen=(i % 2 == 0) if pairs else None))
    return out


def _flat_group(ts):
    """Group 0's samples scored alike: advantage 0 (its rows are dropped from the update; the loss divides by
    every row's tokens, so the gradient is the one of the whole batch)."""
    for t in ts:
        if t.group_id == 0:
            t.advantage = 0.0
    return ts


def _expected_grad_norm(group, objective, ts, model, ref, temperature):
    """The global loss of all trajectories (one process, one micro batch) and its gradient norm."""
    obj = get_objective(objective)
    batch = obj.collate(ts, pad_id=0)
    model.zero_grad()
    loss, _ = obj.loss(model, batch, group.settings, None, temperature, ref)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).norm().item(), loss.item()


def _pull(group, model, version):
    msg, buf = ray.get(group.weights_ref(version))
    model.load_state_dict(unpack_state_dict(msg, buf))
    return float(sum(v.double().abs().sum() for v in model.state_dict().values()))


def test_update_grpo_dpo_sft_on_uneven_counts(ray_local, tiny_model_path, tmp_path):
    group = LearnerGroup(_cfg(), tiny_model_path, "PACK", name="learner-test")
    try:
        local = load_causal_lm(tiny_model_path)
        ref = load_causal_lm(tiny_model_path).requires_grad_(False)
        heldout = _samples(5, seed=99, behaviour=False)
        # before any update the policy is the reference, and both match this process
        pi0 = group.sequence_logprobs(heldout, pad_id=0)
        assert pi0 == pytest.approx(group.sequence_logprobs(heldout, pad_id=0, reference=True), rel=1e-6)
        want = response_logprob_sums(local, get_objective("sft").collate(heldout, 0)).tolist()
        assert pi0 == pytest.approx(want, rel=1e-5)

        fingerprint = _pull(group, local, 0)
        steps = [("grpo", _samples(5, seed=1), 0.8),  # ranks hold 3 and 2 rows -> 2 micro steps each
                 ("dpo", _samples(6, seed=2, pairs=True, behaviour=False), 1.0),  # 3 pairs: 2 and 1 -> 2 steps
                 ("sft", _samples(9, seed=3, behaviour=False), 1.0),  # 5 and 4 rows -> 3 micro steps
                 ("grpo", _samples(1, seed=4), 0.8),  # one row: rank 1 runs a padding step only
                 ("grpo", _flat_group(_samples(6, seed=5)), 0.8)]  # a flat group is left out, still counted
        for version, (objective, ts, temperature) in enumerate(steps, start=1):
            norm, loss = _expected_grad_norm(group, objective, ts, local, ref, temperature)
            metrics = group.update(ts, objective, temperature, pad_id=0)
            assert all(math.isfinite(v) for v in metrics.values()), metrics
            assert metrics["grad_norm"] == pytest.approx(norm, rel=1e-4), objective
            assert metrics["loss"] == pytest.approx(loss, rel=1e-4, abs=1e-6), objective
            new = _pull(group, local, version)
            assert new != fingerprint, objective  # the weights moved
            fingerprint = new
            if objective == "dpo":
                assert {"dpo/loss", "dpo/margin", "dpo/accuracy", "dpo/chosen_reward", "dpo/rejected_reward"} <= set(metrics)
            if objective == "sft":
                assert metrics["sft/nll"] == pytest.approx(loss, rel=1e-4)
            if objective == "grpo":
                flat = sum(t.advantage == 0 for t in ts)
                assert metrics.get("update/dropped_samples", 0) == flat and metrics.get("update/flat_groups", 0) == (flat > 0)
                assert {"pg_loss", "kl", "clip_frac", "ratio_max", "logprob_gap/mean_abs", "lr", "seconds"} <= set(metrics)

        # after training: the policy moved away from the reference, which is still the initial model
        pi = group.sequence_logprobs(heldout, pad_id=0)
        assert pi == pytest.approx(response_logprob_sums(local, get_objective("sft").collate(heldout, 0)).tolist(), rel=1e-5)
        assert group.sequence_logprobs(heldout, pad_id=0, reference=True) == pytest.approx(pi0, rel=1e-6)
        assert pi != pytest.approx(pi0, rel=1e-3)
        with pytest.raises(ValueError, match="unknown objective 'ppo'"):
            group.update(steps[0][1], "ppo", 1.0, pad_id=0)

        # save, train on, load: the weights are the saved ones again
        group.save(str(tmp_path / "ds"), "state", str(tmp_path / "hf"), tiny_model_path)
        assert (tmp_path / "hf" / "config.json").is_file()
        group.update(steps[2][1], "sft", 1.0, pad_id=0)
        assert _pull(group, local, 10) != fingerprint
        group.load(str(tmp_path / "ds"), "state")
        assert _pull(group, local, 11) == pytest.approx(fingerprint, rel=1e-12)
    finally:
        for w in group.ranks:
            ray.kill(w)
        ray.util.remove_placement_group(group.pg)
