"""The command line: help, one-line errors, config validation before anything starts.

The command runs in a subprocess where its own start-up is under test (help, unknown commands and keys,
wrong types, a cross-key check); the many validation messages run `evoforge train` in this process
(tests.conftest.train_in_process: the same Hydra app, exit code and stderr, without an interpreter per case)."""
import pytest

from tests.conftest import evoforge, train_in_process


def test_help():
    proc = evoforge("--help")
    assert proc.returncode == 0 and "train" in proc.stdout and "env list" in proc.stdout
    proc = evoforge("train", "--help")
    assert proc.returncode == 0
    assert "learner" in proc.stdout and "ray job submit" in proc.stdout


def test_unknown_command_is_one_line():
    proc = evoforge("trian")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown command 'trian'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_key_named_before_start(tmp_path):
    proc = evoforge("train", f"run_dir={tmp_path / 'r'}", "learner.zero_stag=3")
    assert proc.returncode != 0 and "zero_stag" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_wrong_type_named(tmp_path):
    proc = evoforge("train", f"run_dir={tmp_path / 'r'}", "steps=many")
    assert proc.returncode != 0 and "steps" in proc.stderr and "Traceback" not in proc.stderr


def test_cross_key_validation(tmp_path):
    proc = evoforge("train", f"run_dir={tmp_path / 'r'}", "schedule=[distill]", "+policies.a={}", "+policies.b={}",
                    "+roles.teacher=a")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "episode 'distill' needs role 'student': map it with roles.student=<one of a, b>" in proc.stderr
    assert not (tmp_path / "r").exists()  # refused before anything started


@pytest.mark.parametrize("overrides, message", [
    (["rollout.weight_sync=nccl"], "rollout.weight_sync='nccl': use auto, object_store or broadcast"),
    (["rollout.placement=gpu"], "rollout.placement='gpu': use auto, workers or learner"),
    (["rollout.placement=learner", "rollout.backend=vllm"], "rollout.placement=learner hosts one transformers "
                                                            "engine in learner rank 0: it needs rollout.backend=hf"),
    (["rollout.colocate=true"], "rollout.colocate=true needs rollout.backend=vllm"),
    (["rollout.colocate=true", "rollout.backend=vllm"], "rollout.colocate=true needs GPUs"),
    (["rollout.colocate=true", "rollout.backend=vllm", "rollout.gpus_per_worker=0.5", "learner.gpus_per_rank=0.5",
      "rollout.weight_sync=broadcast"], "NCCL cannot connect two processes on the same GPU"),
    (["selfplay=evoenv", "selfplay.keep_proposals=-1"], "selfplay.keep_proposals=-1: a number of steps >= 0"),
    (["selfplay=evoenv", "selfplay.seed_set=easy"], "selfplay.seed_set='easy': use one of puzzles, starters, all"),
    (["rollout.max_staleness=1", "rollout.colocate=true"], "rollout.max_staleness=1 overlaps rollouts with the "
                                                           "update, but rollout.colocate=true"),
    (["rollout.max_staleness=-1"], "rollout.max_staleness=-1: steps the rollouts may run ahead"),
    (["learner.compute_dtype=fp8"], "learner.compute_dtype='fp8': use auto, float32 or bfloat16"),
    (["env=reasoning_gym", "env.name=chain_sum", "env.rg_config.max_digit=1"],
     "env.rg_config: 'max_digit' is not a parameter of Reasoning Gym's 'chain_sum'; its parameters: min_terms"),
    (["env=reasoning_gym", "env.name=chain_sum", "env.rg_config.max_digits=0"],
     "env.rg_config={'max_digits': 0} is rejected by 'chain_sum': max_digits must be >= min_digits"),
    (["env.rg_config.max_digits=1"], "env.kind='file' is not reasoning_gym"),
    (["env=reasoning_gym", "heldout.tasks=[leg_counting]", "heldout.k=8"],
     "heldout.k=8: pass@k needs 1 <= k <= heldout.samples=4"),
    (["heldout.tasks=[leg_counting]"], "heldout.tasks runs Reasoning Gym tasks: add reasoning_gym to "
                                       "env.sandbox.extra_imports"),
    (["schedule=[propose_critic]", "episodes.propose_critic.k_min=1"],
     "episodes.propose_critic.k_min=1, k_max=8: need 2 <= k_min <= k_max"),
    (["schedule=[propose_critic]", "episodes.propose_critic.render=image"],
     "episodes.propose_critic.render='image': use text"),
    (["schedule=[delta_rubric]", "episodes.delta_rubric.responses=1"],
     "episodes.delta_rubric.responses=1: a pair needs at least two answers per task"),
    (["+scripted.critic=[1]"], "scripted.critic: no episode of the schedule has role 'critic' (roles: solver)"),
    (["+judges.r.kind=rubric", "+judges.r.template='{question} {a} {b}'"],
     "judges.r.template: a judge with a plan_template reads the checklist: add {checklist}"),
])
def test_weight_sync_and_colocate_validation(tmp_path, overrides, message):
    proc = train_in_process(f"run_dir={tmp_path / 'r'}", *overrides)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_unknown_environment_and_model(tmp_path):
    proc = train_in_process(f"run_dir={tmp_path / 'r'}", "env.name=nope", "logger.wandb.enabled=false")
    assert proc.returncode == 1 and "unknown environment 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    proc = train_in_process(f"run_dir={tmp_path / 's'}", f"model.name={tmp_path}", "logger.wandb.enabled=false")
    assert proc.returncode == 1 and "without config.json" in proc.stderr


def test_resume_missing_checkpoint(tmp_path):
    proc = evoforge("train", f"resume={tmp_path}")
    assert proc.returncode == 1 and "no complete checkpoint" in proc.stderr


def test_env_list():
    proc = evoforge("env", "list")
    assert proc.returncode == 0 and "repeat_digits" in proc.stdout
    assert evoforge("env", "frob").returncode == 2
