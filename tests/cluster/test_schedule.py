"""Policies, roles and the schedule as config: checked before anything starts, without a cluster."""
import json

import pytest

from cluster.config.schema import DEFAULT_POLICY, resolve_policies
from cluster.evaluate import parse_args
from cluster.evaluation.scoring import EvalError, checkpoint_model_dir
from cluster.evaluate import compose_config as compose
from cluster.episodes.registry import default_pattern
from cluster.episodes.schedule import Schedule
from cluster.config.errors import ConfigError
from cluster.runconfig.checks import validate


def test_schedule_is_a_pure_function_of_the_step():
    s = Schedule(["task", "task", "evoenv"])
    assert [s.kind(i) for i in range(7)] == ["task", "task", "evoenv", "task", "task", "evoenv", "task"]
    assert s.kind(10_000) == s.kind(10_000 % 3) and s.kinds() == ["task", "evoenv"]
    with pytest.raises(ValueError):
        Schedule([])


@pytest.mark.parametrize("every", [1, 3])
def test_default_schedule_is_self_plays_generator_every(every):
    """k solver steps then one generator step: step % (k + 1) == k, as self-play always scheduled it."""
    cfg = compose(["selfplay=evoenv", f"selfplay.generator_every={every}"])
    s = Schedule(default_pattern(cfg))
    assert [s.kind(i) == "evoenv" for i in range(12)] == [i % (every + 1) == every for i in range(12)]
    assert default_pattern(compose([])) == ["task"]


def test_policies_inherit_the_top_level_groups():
    cfg = compose(["learner.lr=0.01", "learner.world_size=2", "+policies.big.model.tiny_layers=3",
                   "+policies.small.learner.world_size=1"])
    p = resolve_policies(cfg)
    assert p["big"].model.tiny_layers == 3 and p["big"].learner.lr == 0.01 and p["big"].learner.world_size == 2
    assert p["small"].model.tiny_layers == 2 and p["small"].learner.world_size == 1 and p["small"].learner.lr == 0.01
    single = resolve_policies(compose(["learner.lr=0.5"]))
    assert list(single) == [DEFAULT_POLICY] and single[DEFAULT_POLICY].learner.lr == 0.5


@pytest.mark.parametrize("overrides, message", [
    (["+policies.a.learner.lrr=1"], "policies.a.learner.lrr: Key 'lrr' not in 'LearnerConfig'"),
    (["+policies.a.learner.world_size=0"], "policies.a.learner.world_size=0: must be at least 1"),
    (["schedule=[task,dpo]"], "schedule: unknown episode kind 'dpo': use task, evoenv, distill"),
    (["schedule=[evoenv]"], "the evoenv episode needs self-play"),
    (["+roles.solver=nobody"], "roles.solver='nobody': no such policy (policies: policy)"),
    (["+policies.a.model.tiny_layers=1", "+policies.b.model.tiny_layers=2", "+roles.solver=a", "schedule=[distill]",
      "+roles.teacher=a"], "episode 'distill' needs role 'student': map it with roles.student=<one of a, b>"),
    (["episodes.task.objective=ppo"], "episodes.task.objective='ppo': use grpo or dpo"),
    (["algorithm.dpo.loss_type=hinge"], "algorithm.dpo.loss_type='hinge': use sigmoid or ipo"),
    (["+judges.rm.kind=oracle"], "judges.rm.kind='oracle': use generative, scalar, process"),
])
def test_bad_policy_role_and_schedule_config_is_refused(overrides, message):
    with pytest.raises(ConfigError) as e:
        validate(compose(overrides))
    assert message in str(e.value)


def _hf(folder):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")


def test_eval_picks_one_policy_of_a_multi_policy_checkpoint(tmp_path):
    step = tmp_path / "run" / "checkpoints" / "step_000002"
    for name in ("student", "teacher"):
        _hf(step / "policies" / name / "hf")
    (step / "driver.json").write_text(json.dumps({"step": 2, "versions": {"student": 2, "teacher": 1}}))
    assert checkpoint_model_dir(str(tmp_path / "run"), "student") == step / "policies" / "student" / "hf"
    with pytest.raises(EvalError, match=r"holds several policies \(student, teacher\): pass policy=<name>"):
        checkpoint_model_dir(str(tmp_path / "run"))
    with pytest.raises(EvalError, match="policy=coach: .* holds policies student, teacher"):
        checkpoint_model_dir(str(step), "coach")
    _, ev, rest = parse_args(["checkpoint=x", "policy=student", "eval.instances=2"])
    assert ev.policy == "student" and ev.instances == 2 and rest == []
