"""`evoforge eval`: held-out accuracy of a model on environments, greedy, with fixed seeds.

    evoforge eval checkpoint=runs/X env=reasoning_gym env.name=leg_counting eval.instances=32
    evoforge eval eval.tasks=[repeat_digits,rg_leg_counting] eval.output=runs/X/eval_after.json

The train command's config (conf/, the same `group=option` and `key=value` overrides) picks the model,
the rollout backend (`rollout=hf|vllm`), the environment and its sandbox; `eval.*` keys (EvalConfig)
pick what is measured. `checkpoint=` is a run directory (its latest complete checkpoint), a checkpoint
folder (`step_NNNNNN`) or an HF folder; without it the base model (`model=...`) is evaluated. A LoRA
checkpoint (a PEFT adapter in `hf/`) is merged into its base model in a temporary folder first.

Each task gets `eval.instances` instances at `eval.difficulty`, from seeds that depend only on
`eval.seed` and lie far above the seeds training draws, so they are held out and the same for every
model. Responses are greedy (temperature 0, one per instance) and scored in the sandbox. Per task:
accuracy (mean score), exact (fraction scoring 1) and the mean response length in tokens.
The measurement itself is cluster/evaluation/scoring.py.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from cluster.evaluation.scoring import CONF_DIR, EvalConfig, EvalError, evaluate, model_source, resolve_tasks

USAGE = """usage: evoforge eval [checkpoint=PATH] [eval.KEY=VALUE ...] [group=option] [key=value ...]

Held-out accuracy of a model on environments: greedy responses to fixed-seed instances, scored in
the sandbox; prints one row per task (instances, accuracy = mean score, exact = fraction scoring 1,
mean response tokens).

  checkpoint=PATH        a run directory (latest checkpoint), a checkpoint folder (step_NNNNNN) or an
                         HF model folder; omitted: the base model of the model config
  policy=NAME            the policy to evaluate, when the checkpoint holds several (policies/NAME/)
  eval.tasks=[a,b]       environments to evaluate (default: [env.name]); rg_<dataset> = Reasoning Gym
  eval.instances=64      instances per task
  eval.samples=0         sampled responses per instance for pass@k (0: greedy only)
  eval.k=1               pass@k (k <= eval.samples), estimated without bias
  eval.temperature=1.0   temperature of the sampled responses
  eval.seed=1234         instance seeds derive from this only (held out from training)
  eval.difficulty=1      difficulty of every instance
  eval.max_new_tokens=0  response length cap (0: rollout.sampling.max_new_tokens)
  eval.batch=16          prompts per generate call
  eval.output=PATH       also write the results as JSON (a list of rows)
  plus any train override: model=smollm2, rollout=vllm, env=reasoning_gym env.name=leg_counting, ...

examples:
  evoforge eval checkpoint=runs/2026-11-25_10-00-00
  evoforge eval model=smollm2 env=reasoning_gym env.name=leg_counting eval.instances=64
  evoforge eval eval.tasks=[repeat_digits,rg_chain_sum] eval.output=eval.json
"""


def format_table(rows: list[dict]) -> str:
    """The results as a markdown table."""
    def ci(r, key):
        low, high = r.get(f"{key}_ci") or (None, None)
        return f"{r[key]:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{r[key]:.3f}"

    passk = any("pass_at_k" in r for r in rows)
    lines = ["| task | instances | accuracy [95% CI] | exact | " + ("pass@k [95% CI] | " if passk else "")
             + "mean response tokens |",
             "|------|----------:|---------:|------:|" + ("---------:|" if passk else "") + "---------------------:|"]
    for r in rows:
        cell = (f" {ci(r, 'pass_at_k')} (k={r['k']}) |" if "pass_at_k" in r else " - |") if passk else ""
        lines.append(f"| {r['task']} | {r['instances']} | {ci(r, 'accuracy')} | {r['exact']:.3f} |{cell} "
                     f"{r['response_tokens']:.1f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> tuple[Optional[str], EvalConfig, list[str]]:
    """Split the command line into (checkpoint, EvalConfig from eval.* keys, the train overrides)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    checkpoint, ev_items, rest = None, [], []
    for arg in argv:
        if arg.startswith("checkpoint="):
            checkpoint = arg.split("=", 1)[1] or None
        elif arg.startswith("policy="):
            ev_items.append(arg)
        elif arg.startswith("eval."):
            ev_items.append(arg[len("eval."):])
        else:
            rest.append(arg)
    ev = OmegaConf.structured(EvalConfig)
    for item in ev_items:
        try:
            ev = OmegaConf.merge(ev, OmegaConf.from_dotlist([item]))
        except (OmegaConfBaseException, ValueError) as e:
            raise EvalError(f"eval.{item}: {_first_line(e)}") from None
    return checkpoint, OmegaConf.to_object(ev), rest


def compose_config(overrides: Sequence[str]):
    """The train config (TrainConfig) composed from conf/ with `overrides`, as `evoforge train` would."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from cluster.runconfig.store import register_configs

    register_configs()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None, job_name="evoforge-eval"):
            return OmegaConf.to_object(compose("config", overrides=list(overrides)))
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise EvalError(_first_line(e)) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    cause = e.__cause__
    if cause is not None and str(cause).strip():
        text += f" ({str(cause).strip().splitlines()[0]})"
    return text


def main(argv: Sequence[str]) -> int:
    """`evoforge eval ...`: print the table (and write eval.output); one-line errors exit 1."""
    from envs.pool import PoolError
    from envs.errors import UnknownEnvironmentError
    from envs.errors import SandboxUnavailable
    from envs.sandbox.backends import resolve_backend
    from trainers.models import ModelError

    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE, end="")
        return 0
    try:
        checkpoint, ev, overrides = parse_args(argv)
        cfg = compose_config(overrides)
        resolve_backend(cfg.env.sandbox.backend, cfg.env.sandbox.allow_unisolated)  # before a model loads
        tasks = ev.tasks or [cfg.env.name]
        resolve_tasks(tasks, cfg.env.kind, cfg.env)
        if ev.policy and not checkpoint:
            raise EvalError(f"policy={ev.policy} needs checkpoint=<a multi-policy run or checkpoint>")
        label = (checkpoint or f"model={cfg.model.name}") + (f" policy={ev.policy}" if ev.policy else "")
        with model_source(checkpoint, cfg.model, ev.policy) as path:
            print(f"evoforge eval: {label} ({cfg.rollout.backend} backend, chat template "
                  f"{'on' if cfg.model.chat_template else 'off'}), seed {ev.seed}, difficulty {ev.difficulty}",
                  flush=True)
            rows = evaluate(path, tasks, cfg, ev, log=lambda m: print(m, file=sys.stderr, flush=True))
    except (EvalError, ModelError, UnknownEnvironmentError, SandboxUnavailable, PoolError, OSError) as e:
        print(f"evoforge eval: error: {_first_line(e)}", file=sys.stderr)
        return 1
    print(format_table(rows))
    if ev.output:
        out = Path(ev.output).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
