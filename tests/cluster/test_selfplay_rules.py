"""Self-play's decision rules as plain functions: the L5 difficulty search and the generator reward."""
import pytest

from cluster.episodes.selfplay.library_loop import calibrate, generator_reward


def test_calibration_moves_up_until_inside_the_band():
    rates = {1: 0.95, 2: 0.9, 3: 0.6, 5: 0.1}
    asked = []
    result, record = calibrate(lambda d: asked.append(d) or rates[d], [5, 3, 2, 1], [0.2, 0.8])
    assert result.passed and record["difficulty"] == 3 and record["p"] == 0.6 and asked == [1, 2, 3]
    assert "0.60 at difficulty 3" in result.reason


def test_calibration_too_hard_at_the_easiest_level_fails_at_once():
    asked = []
    result, record = calibrate(lambda d: asked.append(d) or 0.0, [1, 2, 3], [0.2, 0.8])
    assert not result.passed and asked == [1] and "too hard" in result.reason and "difficulty" not in record


def test_calibration_never_revisits_a_level():
    rates = {1: 0.9, 2: 0.1}  # too easy at 1, too hard at 2: no level in between
    result, record = calibrate(lambda d: rates[d], [1, 2], [0.2, 0.8])
    assert not result.passed and record["tried"] == rates and "1: 0.90, 2: 0.10" in result.reason


def test_calibration_too_easy_everywhere():
    result, _ = calibrate(lambda d: 1.0, [1, 2, 3], [0.2, 0.8])
    assert not result.passed and "too easy" in result.reason


@pytest.mark.parametrize("p, kind, partial, passed, expected", [
    (0.25, "learnability", 0.0, 7, 0.75), (0.25, "min", 0.0, 7, 0.25), (0.7, "min", 0.0, 7, 0.3),
    (None, "learnability", 0.0, 3, 0.0), (None, "learnability", 0.05, 3, 0.15), (None, "min", 0.1, 0, 0.0),
])
def test_generator_reward(p, kind, partial, passed, expected):
    assert generator_reward(p, kind, partial, passed) == pytest.approx(expected)


def test_default_job_config_is_valid():
    """`make run`'s job (conf/experiment/selfplay_cpu.yaml) composes and passes every cross-key check."""
    from cluster.evaluate import compose_config
    from cluster.runconfig.checks import validate

    cfg = compose_config(["+experiment=selfplay_cpu"])
    validate(cfg)
    assert cfg.selfplay.enabled and cfg.model.name == "smollm2" and cfg.rollout.backend == "vllm"
    assert cfg.heldout.tasks and "reasoning_gym" in cfg.env.sandbox.extra_imports
    assert cfg.selfplay.seed_env and cfg.env.name == "chain_sum" and cfg.selfplay.response_prefix.startswith("```python")
    assert cfg.selfplay.seed_set == "starters"
    learn = compose_config(["+experiment=grpo_cpu"])  # the GRPO learning demonstration
    validate(learn)
    assert not learn.selfplay.enabled and learn.heldout.tasks == ["chain_sum"] and learn.heldout.instances >= 64
