"""`evoforge eval`: held-out accuracy with fixed seeds, from a base model, a checkpoint or a LoRA checkpoint."""
import json
from pathlib import Path

import pytest
import torch

from actors.rollout.hf_backend import Sample
from cluster.evaluate import compose_config, format_table, parse_args
from cluster.evaluation.scoring import EvalConfig, EvalError, eval_seeds, evaluate, evaluate_backend, model_source, resolve_tasks, sandbox_limits
from tests.conftest import evoforge
from trainers.models import load_causal_lm, load_tokenizer

TASKS = ["repeat_digits", "rg_leg_counting"]


def _checkpoint(run_dir, step, save):
    """A run directory holding one complete checkpoint whose hf/ is written by `save(folder)`."""
    folder = run_dir / "checkpoints" / f"step_{step:06d}"
    (folder / "hf").mkdir(parents=True)
    save(folder / "hf")
    (folder / "driver.json").write_text(json.dumps({"step": step, "version": step, "seed": 0}))
    return folder


def _check_rows(rows, tasks, instances):
    assert [r["task"] for r in rows] == tasks
    for r in rows:
        assert r["instances"] == instances
        assert 0.0 <= r["exact"] <= r["accuracy"] <= 1.0
        assert r["response_tokens"] > 0 and sum(r["verdicts"].values()) == instances


def test_parse_args_splits_eval_keys_checkpoint_and_train_overrides():
    checkpoint, ev, rest = parse_args(["checkpoint=runs/x", "eval.instances=4", "eval.tasks=[a,rg_b]",
                                       "env=reasoning_gym", "model=smollm2"])
    assert checkpoint == "runs/x" and rest == ["env=reasoning_gym", "model=smollm2"]
    assert ev == EvalConfig(instances=4, tasks=["a", "rg_b"])
    with pytest.raises(EvalError, match="eval.instancs=3: Key 'instancs'"):
        parse_args(["eval.instancs=3"])
    assert eval_seeds(1234, 3) == eval_seeds(1234, 3) and not set(eval_seeds(1, 3)) & set(eval_seeds(2, 3))


def test_task_names_and_sandbox_limits():
    cfg = compose_config([])  # env=repeat_digits: kind file, no extra imports
    assert [t[:2] for t in resolve_tasks(["repeat_digits", "rg_leg_counting"], "file")] == [
        ("repeat_digits", "file"), ("rg_leg_counting", "reasoning_gym")]
    assert resolve_tasks(["leg_counting"], "reasoning_gym")[0][:2] == ("rg_leg_counting", "reasoning_gym")
    assert sandbox_limits(cfg.env.sandbox, ["file"]).extra_imports == []
    limits = sandbox_limits(cfg.env.sandbox, ["file", "reasoning_gym"])
    assert limits.extra_imports == ["reasoning_gym"] and limits.memory_mb >= 4096
    assert cfg.env.sandbox.extra_imports == []  # the config is not changed


def test_cli_on_a_checkpoint_matches_the_library_on_the_same_weights(tmp_path, tiny_model_path):
    def save(hf):
        load_causal_lm(tiny_model_path).save_pretrained(hf)
        load_tokenizer(tiny_model_path).save_pretrained(hf)

    run_dir = tmp_path / "run"
    _checkpoint(run_dir, 3, save)
    out = tmp_path / "eval.json"
    proc = evoforge("eval", f"checkpoint={run_dir}", "eval.tasks=[repeat_digits,rg_leg_counting]",
                    "eval.instances=3", "eval.max_new_tokens=6", f"eval.output={out}", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| task | instances | accuracy [95% CI] | exact |" in proc.stdout
    assert "| repeat_digits | 3 |" in proc.stdout and "| rg_leg_counting | 3 |" in proc.stdout
    cli_rows = json.loads(out.read_text())
    _check_rows(cli_rows, TASKS, 3)
    # the same weights from the base model's folder, in-process: identical numbers (fixed seeds, greedy)
    rows = evaluate(tiny_model_path, TASKS, compose_config([]), EvalConfig(instances=3, max_new_tokens=6))
    assert rows == cli_rows
    # pass@k from sampled responses: the table grows a column, the rows their estimate and interval
    # the same command in this process (its start-up was tested above)
    code, out, err = _eval_in_process(f"checkpoint={run_dir}", "eval.tasks=[repeat_digits]", "eval.instances=3",
                                      "eval.max_new_tokens=6", "eval.samples=3", "eval.k=2")
    assert code == 0, err
    assert "pass@k [95% CI]" in out and "(k=2)" in out
    code, out, err = _eval_in_process(f"checkpoint={run_dir}", "eval.samples=2", "eval.k=3")
    assert code == 1 and "eval.k=3: pass@k needs 1 <= k <= eval.samples=2" in err


def _eval_in_process(*args):
    """`evoforge eval ARGS` in this process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from cluster.evaluate import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def test_evaluate_backend_scores_a_given_backend_deterministically(tiny_model_path):
    """A backend object already loaded (the self-play driver's case); a perfect one scores 1."""
    from envs.registry import resolve_environment
    from envs.sandbox.limits import Limits
    from envs.sandbox.backends import make_pool

    cfg, ev = compose_config([]), EvalConfig(instances=4, difficulty=2)
    tokenizer = load_tokenizer(tiny_model_path)
    with make_pool("auto", 1, Limits()) as pool:
        pool.load(*resolve_environment("repeat_digits"))
        answers = {i["prompt"]: i["reference"] for i in pool.sample("repeat_digits", eval_seeds(ev.seed, 4), 2)}

    class Oracle:
        def generate(self, prompts, sampling, seed):
            assert sampling.temperature == 0 and sampling.n == 1
            texts = [answers[tokenizer.decode(p)] for p in prompts]
            return [[Sample(tokenizer(t).input_ids, [0.0] * len(t), t, "stop")] for t in texts]

    first = evaluate_backend(Oracle(), ["repeat_digits"], cfg, ev, tokenizer=tokenizer)
    assert first == evaluate_backend(Oracle(), ["repeat_digits"], cfg, ev, tokenizer=tokenizer)
    assert first[0]["accuracy"] == 1.0 and first[0]["exact"] == 1.0 and first[0]["response_tokens"] == 4.0
    assert "| repeat_digits | 4 | 1.000 [0.510, 1.000] | 1.000 | 4.0 |" in format_table(first)  # Wilson, 4 of 4


def test_lora_checkpoint_is_merged_into_its_base(tmp_path, tiny_model_path):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(load_causal_lm(tiny_model_path),
                                LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))

    def save(hf):
        peft_model.save_pretrained(hf)
        load_tokenizer(tiny_model_path).save_pretrained(hf)

    step_dir = _checkpoint(tmp_path / "run", 1, save)
    ids = torch.tensor([[13, 14, 15, 16]])
    with torch.no_grad():
        want = peft_model(ids).logits
        base = load_causal_lm(tiny_model_path)(ids).logits
    cfg = compose_config([])
    with model_source(str(step_dir), cfg.model) as path:
        with torch.no_grad():
            got = load_causal_lm(path)(ids).logits
        assert load_tokenizer(path).decode([13, 14]) == load_tokenizer(tiny_model_path).decode([13, 14])
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, base, atol=1e-3)
    assert not Path(path).exists()  # the merged folder was temporary


@pytest.mark.parametrize("args, message", [
    (["checkpoint=/nonexistent/run"], "checkpoint=/nonexistent/run: no such file or directory"),
    (["eval.tasks=[repeat_digits,nope]"], "unknown environment 'nope'"),
])
def test_bad_input_is_one_line_exit_1(args, message):
    proc = evoforge("eval", *args, timeout=120)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_folder_without_checkpoint_is_rejected(tmp_path):
    (tmp_path / "checkpoints" / "step_000001").mkdir(parents=True)  # no driver.json: incomplete
    with pytest.raises(EvalError, match="not a run directory with a complete checkpoint"):
        with model_source(str(tmp_path), compose_config([]).model):
            pass
