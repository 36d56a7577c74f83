"""Several policies in one run, episodes and objectives, end to end on the real stack (embedded Ray on
loopback, DeepSpeed ranks over gloo, transformers rollout workers, sandboxed executors, tiny models)."""
import json
import shutil

import pytest

from tests.cluster.test_e2e import metrics, train
from tests.conftest import evoforge

pytestmark = pytest.mark.e2e

# a teacher of two layers and a student of one, each with its own learner group and rollout pool
TWO_POLICIES = ["schedule=[distill]", "+policies.teacher.learner.world_size=2",
                "+policies.student.model.tiny_layers=1", "+policies.student.learner.world_size=1",
                "+policies.student.learner.lr=1e-3", "+roles.teacher=teacher", "+roles.student=student",
                "episodes.distill.min_reward=0.0", "algorithm.prompts_per_step=4", "cluster.num_cpus=8"]


def test_two_policies_one_episode_two_roles_and_resume(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train(full, "steps=4", "save_every=3", "seed=5", *TWO_POLICIES)
    rows = metrics(full)
    assert [r["kind"] for r in rows] == ["distill"] * 4
    # both policies advance, each by its own objective (teacher: GRPO, student: SFT on the teacher's best)
    assert rows[-1]["policy_version/student"] == 4 and rows[-1]["student/policy_version"] == 4
    assert 1 <= rows[-1]["policy_version/teacher"] <= 4
    assert all(r["distill/targets"] == 4 and r["student/sft/nll"] > 0 for r in rows)
    ckpt = full / "checkpoints" / "step_000004"
    state = json.loads((ckpt / "driver.json").read_text())
    assert state["versions"] == {"teacher": rows[-1]["policy_version/teacher"], "student": 4}
    from transformers import AutoModelForCausalLM

    layers = {name: AutoModelForCausalLM.from_pretrained(ckpt / "policies" / name / "hf").config.num_hidden_layers
              for name in ("teacher", "student")}
    assert layers == {"teacher": 2, "student": 1}
    import os

    import torch

    from cluster.config.schema import ModelConfig
    from trainers.models import load_causal_lm, prepare_model

    initial = load_causal_lm(prepare_model(ModelConfig(tiny_layers=1, cache_dir=os.environ["EVOFORGE_CACHE"])))
    trained = load_causal_lm(str(ckpt / "policies" / "student" / "hf"))
    changed = [n for n, p in trained.named_parameters() if not torch.equal(p, dict(initial.named_parameters())[n])]
    assert changed  # the student's SFT updates reached its checkpoint
    assert (ckpt / "policies" / "student" / "deepspeed").is_dir()
    # a run stopped after its step-3 checkpoint (what was on disk then), resumed, reproduces the uninterrupted run
    shutil.copytree(full, part)
    shutil.rmtree(part / "checkpoints" / "step_000004")
    (part / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    train(part, "steps=4", "save_every=3", "seed=5", f"resume={part}", *TWO_POLICIES)
    a, b = rows, metrics(part)
    assert [r["step"] for r in b] == list(range(4))
    for key in ("reward/mean", "teacher/loss", "student/loss", "student/sft/nll", "policy_version/teacher",
                "policy_version/student"):
        assert [r[key] for r in a[3:]] == pytest.approx([r[key] for r in b[3:]], abs=1e-6), key
    # one policy of the run evaluated by name (without a name: tests/cluster/test_schedule.py)
    proc = evoforge("eval", f"checkpoint={full}", "policy=student", "eval.instances=4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "policy=student" in proc.stdout and "| repeat_digits | 4 |" in proc.stdout


def test_online_dpo_raises_heldout_preference_accuracy(tmp_path):
    """Pairs from the environment: its reference answer (score 1) vs the policy's worst sample (score < 0.5);
    held-out pairs on instances no step trains on, measured with the implicit reward log pi - log ref."""
    run = tmp_path / "dpo"
    train(run, "steps=6", "save_every=0", "seed=1", "episodes.task.objective=dpo", "episodes.task.chosen=reference",
          "episodes.task.heldout_pairs=16", "algorithm.dpo.beta=0.1", "learner.lr=3e-4")
    rows = metrics(run)
    assert all(r["dpo/pairs"] >= 4 for r in rows)
    acc = [r["dpo/heldout_accuracy"] for r in rows]
    assert acc[0] == 0.0  # before any update the policy is its reference: every margin is 0
    assert acc[-1] >= 0.8, acc
    assert rows[-1]["dpo/accuracy"] > 0.5 and rows[-1]["policy_version"] == 6
    assert all(r["dpo/margin"] == pytest.approx(r["dpo/margin"]) for r in rows)  # finite
