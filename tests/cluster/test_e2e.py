"""End to end on the real stack: embedded Ray cluster on loopback, DeepSpeed learner ranks (one by default,
two over gloo where data parallelism is under test), a transformers rollout worker, an environment executor
with worker processes, the tiny model."""
import json
import shutil

import pytest
import yaml

from tests.conftest import evoforge, train_in_process

pytestmark = pytest.mark.e2e

QUIET = ["logger.progress=false", "logger.wandb.enabled=false"]


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def train(run_dir, *overrides, cli: bool = False):
    """One run on the shared Ray head: a driver in this process, or with cli=True the `evoforge train`
    command in a subprocess (where the command itself is under test)."""
    args = (f"run_dir={run_dir}", *QUIET, *overrides)
    proc = evoforge("train", *args) if cli else train_in_process(*args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("backend", ["hf", pytest.param("vllm", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("vllm") is None, reason="vllm is not installed"))])
def test_grpo_learns_repeat_digits(tmp_path, backend):
    run = tmp_path / "learn"
    train(run, "steps=40", "seed=0", "save_every=0", f"rollout.backend={backend}")
    rows = metrics(run)
    assert [r["step"] for r in rows] == list(range(40))
    rewards = [r["reward/mean"] for r in rows]
    early, late = sum(rewards[:10]) / 10, sum(rewards[-10:]) / 10
    assert late > early + 0.1, f"reward did not rise: early {early:.3f}, late {late:.3f}"
    required = {"step", "reward/mean", "reward/std", "loss", "kl", "weight_sync/seconds", "weight_sync/bytes",
                "timing/rollout", "timing/score", "timing/update", "timing/step"}
    assert required <= set(rows[0])
    assert all(r["weight_sync/bytes"] > 0 and r["policy_version"] == r["step"] + 1 for r in rows)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert all(r["logprob_gap/mean_abs"] < 1e-3 for r in rows)  # sampler and learner agree in fp32
    assert config["rollout"]["backend"] == backend
    assert config["steps"] == 40 and config["learner"]["zero_stage"] == 2
    # the final checkpoint holds an HF model that from_pretrained loads
    from transformers import AutoModelForCausalLM

    hf = run / "checkpoints" / "step_000040" / "hf"
    model = AutoModelForCausalLM.from_pretrained(hf)
    assert model.config.num_hidden_layers == 2
    # rollout.placement=auto: one transformers engine lives inside learner rank 0 (a hybrid worker, no rollout
    # process of its own); a vLLM engine gets a rollout worker
    actors = {line.split(":actor_name:")[1].strip() for log in (run / "logs").glob("worker-*.log")
              for line in log.read_text().splitlines() if ":actor_name:" in line}
    assert actors == ({"HybridWorker", "EnvExecutor"} if backend == "hf" else
                      {"RolloutWorker", "LearnerWorker", "EnvExecutor"}), actors


def test_resume_matches_uninterrupted_run(tmp_path):
    """The fewest steps that compare a resumed step with the uninterrupted run's: two steps, a checkpoint after
    each, the second step run again from the first checkpoint."""
    full, part = tmp_path / "full", tmp_path / "part"
    two_ranks = "learner.world_size=2"  # the default is one rank; resume is exact over a data-parallel group too
    train(full, "steps=2", "save_every=1", "seed=3", two_ranks, "logger.wandb.enabled=true")
    assert list((full / "wandb").glob("offline-run-*")), "wandb offline files missing"
    # a run stopped after its step-1 checkpoint: the run directory as it was on disk then
    shutil.copytree(full, part, ignore=shutil.ignore_patterns("wandb", "step_000002"))
    assert (part / "checkpoints" / "step_000001" / "driver.json").exists()
    (part / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics(full)[:1]))
    train(part, "steps=2", "save_every=1", "seed=3", two_ranks, f"resume={part}")
    a, b = metrics(full), metrics(part)
    assert [r["step"] for r in b] == list(range(2))
    for key in ("reward/mean", "loss", "grad_norm", "response_length/mean", "policy_version"):
        assert [r[key] for r in a[1:]] == pytest.approx([r[key] for r in b[1:]], abs=1e-6), key
    # rerunning into a used run directory without resume is refused, and loses nothing
    proc = evoforge("train", f"run_dir={part}", *QUIET, "steps=1")
    assert proc.returncode == 1 and "already holds a run" in proc.stderr
    assert len(metrics(part)) == 2


def test_overlapped_rollouts_are_one_step_stale_and_corrected(tmp_path):
    """rollout.max_staleness=1: each step's samples are drawn while the previous update runs, from the policy one
    version back; the learner recomputes pi_old and weighs tokens by pi_old / pi_sampler (decoupled PPO)."""
    run = tmp_path / "overlap"
    train(run, "steps=4", "seed=1", "save_every=0", "rollout.max_staleness=1", "algorithm.skip_zero_signal=false")
    rows = metrics(run)
    assert [r["policy_version"] for r in rows] == [1, 2, 3, 4]
    assert [r["rollout/staleness"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    assert "tis_weight_mean" not in rows[0] and rows[0]["logprob_gap/mean_abs"] < 1e-3  # on-policy, as without overlap
    for r in rows[1:]:  # the sampler's policy is one update behind the learner's pi_old: a real gap, corrected
        assert r["logprob_gap/mean_abs"] > 1e-3 and 0 < r["tis_weight_mean"] <= 2.0, r


def test_zero3_lora_with_reference_kl(tmp_path):
    run = tmp_path / "z3"
    train(run, "steps=3", "learner=zero3", "learner.lora.rank=4", "algorithm.kl_coef=0.1",
          "algorithm.updates_per_step=2", "algorithm.tis_cap=2.0", "save_every=0")
    rows = metrics(run)
    assert len(rows) == 3
    assert all(r["kl"] >= 0 for r in rows) and rows[-1]["kl"] > 0  # k3 against the frozen reference
    assert max(r["ratio_max"] for r in rows) > 1 + 1e-4  # the second mini-batch sees an updated policy
    assert (run / "checkpoints" / "step_000003" / "hf" / "adapter_config.json").exists()


def test_mixed_cuts_step(tmp_path):
    run = tmp_path / "cuts"
    train(run, "steps=2", "rollout.sampling.cuts_fraction=0.5", "rollout.sampling.top_k=20", "save_every=0")
    rows = metrics(run)
    for key in ("mixed_cuts/standard/reward_var", "mixed_cuts/cuts/reward_var",
                "mixed_cuts/standard/zero_adv_frac", "mixed_cuts/cuts/zero_adv_frac"):
        assert all(key in r for r in rows), key
    # pi_old is recomputed by the learner: ratios start at 1 although CUTS tokens were drawn uniformly
    assert all(abs(r["ratio_max"] - 1.0) < 1e-4 for r in rows)
    assert rows[0]["logprob_gap/mean_abs"] > 0.1  # the sampler's distribution differs from the policy


@pytest.mark.skipif(__import__("importlib").util.find_spec("vllm") is None, reason="vllm is not installed")
def test_vllm_lora_adapter_broadcast_zero3(tmp_path):
    """LoRA on vLLM: only the adapter travels, by broadcast from learner rank 0 (gloo here, NCCL on GPU)."""
    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    common = ("steps=3", "rollout.backend=vllm", "learner=zero3", "learner.lora.rank=4", "save_every=0",
              "rollout.weight_sync=broadcast")
    train(adapter, *common)
    train(merged, *common, "rollout.lora_adapter_sync=false")
    a, m = metrics(adapter), metrics(merged)
    assert len(a) == len(m) == 3
    # 2 layers x (q, k, v, o) adapters of rank 4 are a few percent of the tiny model's weights
    assert all(r["weight_sync/bytes"] < 0.1 * m[0]["weight_sync/bytes"] for r in a)
    # the engine serves what the learner trains: sampler and learner logprobs agree in every step
    # (the adapter path computes x W + x A B instead of x (W + A B), so rewards may differ by a token)
    assert max(r["logprob_gap/max_abs"] for r in a + m) < 1e-4
    assert a[-1]["policy_version"] == 3


def test_heldout_intervals_fewshot_dataset_parameters_and_a_quiet_console(tmp_path):
    """A Reasoning Gym run with fixed dataset parameters and few-shot examples: held-out accuracy before and
    after with intervals and pass@k; the console holds one line per step, the workers' output goes to files.
    The `evoforge train` command itself, in a subprocess, joining a running cluster as a user's would."""
    run = tmp_path / "rg"
    proc = train(run, "steps=2", "save_every=0", "env=reasoning_gym", "env.name=chain_sum", "env.rg_config.max_digits=1",
                 "env.rg_config.max_terms=2", "env.fewshot=2", "heldout.tasks=[chain_sum,leg_counting]",
                 "heldout.instances=6", "heldout.samples=3", "heldout.k=2", "algorithm.prompts_per_step=2", cli=True)
    for tag in ("before", "after"):
        rows = json.loads((run / f"eval_{tag}.json").read_text())
        assert [r["task"] for r in rows] == ["rg_chain_sum", "rg_leg_counting"]
        for r in rows:
            assert r["instances"] == 6 and len(r["scores"]) == 6 and len(r["pass_scores"]) == 6
            assert 0.0 <= r["accuracy_ci"][0] <= r["accuracy"] <= r["accuracy_ci"][1] <= 1.0
            assert (r["k"], r["samples"]) == (2, 3) and 0.0 <= r["pass_at_k"] <= 1.0
    out = proc.stdout
    assert "step 1/2  solver" in out and "step 2/2  solver" in out
    assert "evoforge: held-out before: rg_chain_sum accuracy" in out
    assert "held-out accuracy: greedy" in out and "admission funnel" not in out  # no self-play here
    # the workers' own output (model loading, DeepSpeed) is in run_dir/logs/, not on the console
    assert "pid=" not in out + proc.stderr
    logs = sorted((run / "logs").glob("worker-*.log"))
    assert logs and any(p.stat().st_size > 0 for p in logs)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["env"]["rg_config"] == {"max_digits": 1, "max_terms": 2} and config["env"]["fewshot"] == 2
