"""Held-out accuracy of a model on environments: instances from seeds that depend only on the evaluation's
seed (far above any seed training draws), greedy responses (and sampled ones for pass@k), scored in the sandbox.
`evaluate(model_path, tasks, cfg)` loads a model; `evaluate_backend(backend, tasks, cfg)` reuses a generation
backend already loaded (the held-out measurements of a training run); `score_row` is one task's row of the
results, as `evoforge eval` and the reports read it."""
from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Optional, Sequence

from cluster.config.seeds import EVAL_STRIDE, eval_instances, fewshot_instances

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
RG_PREFIX = "rg_"  # a task named rg_<dataset> is a Reasoning Gym dataset, whatever env.kind says


@dataclass
class EvalConfig:
    instances: int = 64
    seed: int = 1234
    difficulty: int = 1
    tasks: list[str] = field(default_factory=list)  # empty: [env.name]
    max_new_tokens: int = 0  # 0: rollout.sampling.max_new_tokens
    batch: int = 16  # prompts per generate call
    samples: int = 0  # sampled responses per instance for pass@k (0: greedy only)
    k: int = 1  # pass@k from `samples` responses (k <= samples)
    temperature: float = 1.0  # of the sampled responses
    output: Optional[str] = None  # write the results here as JSON
    policy: Optional[str] = None  # which policy of a multi-policy checkpoint (`policy=<name>` on the command line)


class EvalError(RuntimeError):
    """Bad input to an evaluation: reported as one line."""


def eval_seeds(seed: int, instances: int) -> list[int]:
    """Instance seeds of an evaluation: a function of `seed` only, disjoint from training's seeds."""
    if not 0 < instances <= EVAL_STRIDE:
        raise EvalError(f"eval.instances={instances}: must be between 1 and {EVAL_STRIDE}")
    return eval_instances(seed, instances)


def task_kind(name: str, default_kind: str) -> str:
    """The environment kind of a task name: `rg_<dataset>` is always Reasoning Gym."""
    return "reasoning_gym" if name.startswith(RG_PREFIX) else default_kind


def resolve_tasks(tasks: Sequence[str], default_kind: str, env_cfg=None) -> list[tuple[str, str, str]]:
    """(environment id, kind, source) of each task; unknown names raise UnknownEnvironmentError.
    env_cfg (the train config's env): the Reasoning Gym task it names gets its `rg_config` too."""
    from envs.registry import resolve_environment

    out = []
    for name in tasks:
        kind = task_kind(name, default_kind)
        rg_config = None
        if env_cfg is not None and kind == "reasoning_gym" and env_cfg.kind == "reasoning_gym" and \
                name.removeprefix(RG_PREFIX) == env_cfg.name.removeprefix(RG_PREFIX):
            rg_config = env_cfg.rg_config
        env_id, source = resolve_environment(name, kind, rg_config)
        out.append((env_id, kind, source))
    return out


def sandbox_limits(sandbox_cfg, kinds: Sequence[str]):
    """Limits from the env's sandbox config; Reasoning Gym tasks get its import and (at least) its limits."""
    from omegaconf import OmegaConf

    from envs.sandbox.limits import Limits

    limits = Limits(**{k: getattr(sandbox_cfg, k) for k in Limits.__dataclass_fields__})
    limits.extra_imports = list(limits.extra_imports)
    if "reasoning_gym" in kinds and "reasoning_gym" not in limits.extra_imports:
        rg = OmegaConf.load(CONF_DIR / "env" / "reasoning_gym.yaml").sandbox
        limits.extra_imports += list(rg.extra_imports)
        for key in ("memory_mb", "wall_s", "cpu_s"):
            setattr(limits, key, max(getattr(limits, key), rg.get(key, 0)))
    return limits


def evaluate_backend(backend, tasks: Sequence[str], cfg, ev: EvalConfig | None = None, *, kind: str | None = None,
                     tokenizer=None, pool=None, log=None) -> list[dict]:
    """Held-out accuracy of the model behind `backend` (HFBackend, VLLMBackend: `generate`, `tokenizer`).

    cfg: the train config (model.chat_template, rollout.sampling.{max_new_tokens,stop}, env.kind,
    env.sandbox, env.workers_per_executor). kind: how task names resolve ("file" or "reasoning_gym";
    default env.kind; rg_<dataset> is always Reasoning Gym). pool: a sandbox pool to reuse (default: one
    made here and closed after). Returns one row per task: task, instances, accuracy, exact, response_tokens,
    difficulty, seed, verdicts.
    """
    from cluster.config.schema import SamplingConfig
    from envs.sandbox.backends import make_pool
    from trainers.models import encode_prompt

    ev = ev or EvalConfig()
    if ev.samples and not 1 <= ev.k <= ev.samples:
        raise EvalError(f"eval.k={ev.k}: pass@k needs 1 <= k <= eval.samples={ev.samples}")
    tokenizer = tokenizer or backend.tokenizer
    resolved = resolve_tasks(list(tasks) or [cfg.env.name], kind or cfg.env.kind, cfg.env)
    seeds = eval_seeds(ev.seed, ev.instances)
    sampling = SamplingConfig(n=1, max_new_tokens=ev.max_new_tokens or cfg.rollout.sampling.max_new_tokens,
                              temperature=0.0, stop=list(cfg.rollout.sampling.stop))
    own_pool = pool is None
    if own_pool:
        limits = sandbox_limits(cfg.env.sandbox, [k for _, k, _ in resolved])
        pool = make_pool(cfg.env.sandbox.backend, cfg.env.workers_per_executor, limits,
                         allow_unisolated=cfg.env.sandbox.allow_unisolated)
    rows = []
    try:
        for env_id, _, source in resolved:
            if log:
                log(f"evaluating {env_id}: {len(seeds)} instances at difficulty {ev.difficulty}")
            pool.load(env_id, source)
            instances = pool.sample(env_id, seeds, ev.difficulty)
            shots = [(i["prompt"], i["reference"]) for i in pool.sample(
                env_id, fewshot_instances(cfg.env.fewshot), ev.difficulty)] if cfg.env.fewshot else []
            prompts = [encode_prompt(tokenizer, inst["prompt"], cfg.model.chat_template, shots) for inst in instances]
            samples = []
            for start in range(0, len(prompts), max(1, ev.batch)):
                batch = prompts[start:start + max(1, ev.batch)]
                samples += [group[0] for group in backend.generate(batch, sampling, seed=ev.seed)]
            results = pool.score(env_id, [{"data": inst["data"], "response": s.text}
                                          for inst, s in zip(instances, samples)])
            sampled = None
            if ev.samples:
                many = replace(sampling, n=ev.samples, temperature=ev.temperature)
                groups = []
                for start in range(0, len(prompts), max(1, ev.batch)):
                    groups += backend.generate(prompts[start:start + max(1, ev.batch)], many, seed=ev.seed + 1)
                flat = pool.score(env_id, [{"data": inst["data"], "response": s.text}
                                           for inst, group in zip(instances, groups) for s in group])
                sampled = [[r.score for r in flat[i * ev.samples:(i + 1) * ev.samples]] for i in range(len(groups))]
            rows.append(score_row(env_id, [r.score for r in results], [r.verdict for r in results],
                                  [len(s.response_ids) for s in samples], ev.difficulty, ev.seed, sampled, ev.k))
    finally:
        if own_pool:
            pool.close()
    return rows


def score_row(task: str, scores: list[float], verdicts: list[str], lengths: list[int], difficulty: int, seed: int,
              sampled: list[list[float]] | None = None, k: int = 0) -> dict:
    """One task's held-out row: greedy accuracy (mean score) with its 95% interval, exact (fraction scoring
    1), the per-instance scores (for paired before/after comparisons), and with `sampled` (each instance's
    sampled scores) pass@k: the unbiased estimate per instance (a sample passes when it scores 1), its mean
    and interval, and the mean sampled score."""
    from cluster.evaluation.stats import mean_interval, pass_at_k

    n = len(scores)
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v] = counts.get(v, 0) + 1
    row = {"task": task, "instances": n, "accuracy": sum(scores) / n, "accuracy_ci": list(mean_interval(scores)),
           "exact": sum(s >= 1.0 for s in scores) / n, "response_tokens": sum(lengths) / n,
           "difficulty": difficulty, "seed": seed, "verdicts": counts, "scores": [round(s, 6) for s in scores]}
    if sampled:
        per_instance = [pass_at_k(len(g), sum(s >= 1.0 for s in g), k) for g in sampled]
        flat = [s for g in sampled for s in g]
        row.update(k=k, samples=len(sampled[0]), pass_at_k=sum(per_instance) / n,
                   pass_at_k_ci=list(mean_interval(per_instance)), pass_scores=[round(p, 6) for p in per_instance],
                   sampled_accuracy=sum(flat) / len(flat))
    return row


def load_backend(name: str, model_path: str, dtype: str = "float32", device: str | None = None):
    """A generation backend ("hf" or "vllm") on `device` (default: cuda when available, else cpu)."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "hf":
        from actors.rollout.hf_backend import HFBackend

        return HFBackend(model_path, dtype, device)
    if name == "vllm":
        from actors.rollout.vllm_backend import VLLMBackend

        return VLLMBackend(model_path, dtype, device)
    raise EvalError(f"rollout.backend={name!r}: available backends are 'hf', 'vllm'")


def evaluate(model_path: str, tasks: Sequence[str], cfg, ev: EvalConfig | None = None, *, kind: str | None = None,
             log=None) -> list[dict]:
    """Held-out accuracy of the model in `model_path` (an HF folder), loaded with cfg.rollout.backend;
    the rest as `evaluate_backend`."""
    resolve_tasks(list(tasks) or [cfg.env.name], kind or cfg.env.kind, cfg.env)  # unknown tasks fail before loading
    backend = load_backend(cfg.rollout.backend, model_path, cfg.model.dtype)
    try:
        return evaluate_backend(backend, tasks, cfg, ev, kind=kind, log=log)
    finally:
        if hasattr(backend, "close"):
            backend.close()


def checkpoint_model_dir(path: str, policy: str | None = None) -> Path:
    """The HF folder (full model or PEFT adapter) of a run directory, a checkpoint folder or an HF folder;
    of a multi-policy checkpoint, the named policy's (policies/<policy>/hf)."""
    from cluster.rundir.checkpoint import ResumeError, find_checkpoint

    p = Path(path).expanduser()
    if not p.exists():
        raise EvalError(f"checkpoint={path}: no such file or directory")
    if _is_hf(p) and policy is None:
        return p
    try:
        ckpt = find_checkpoint(str(p))
    except ResumeError:
        raise EvalError(f"checkpoint={path}: not a run directory with a complete checkpoint, a checkpoint "
                        "folder (step_NNNNNN) or an HF model folder") from None
    held = sorted(d.name for d in (ckpt / "policies").iterdir() if d.is_dir()) if (ckpt / "policies").is_dir() else []
    if policy is not None:
        if policy not in held:
            raise EvalError(f"policy={policy}: {ckpt} holds " + (f"policies {', '.join(held)}" if held else
                                                                    "one policy (omit policy=)"))
        ckpt = ckpt / "policies" / policy
    elif held:
        raise EvalError(f"checkpoint={path}: {ckpt} holds several policies ({', '.join(held)}): pass policy=<name>")
    if not _is_hf(ckpt / "hf"):
        raise EvalError(f"checkpoint={path}: {ckpt} has no model in hf/ (config.json or adapter_config.json)")
    return ckpt / "hf"


def _is_hf(p: Path) -> bool:
    return (p / "config.json").is_file() or (p / "adapter_config.json").is_file()


@contextmanager
def model_source(checkpoint: str | None, model_cfg, policy: str | None = None) -> Iterator[str]:
    """A folder `from_pretrained` loads: the checkpoint's model, its LoRA adapter merged into the base
    model (a temporary folder, removed on exit), or without a checkpoint the base model of `model_cfg`."""
    from trainers.models import prepare_model

    if not checkpoint:
        yield prepare_model(model_cfg)
        return
    hf = checkpoint_model_dir(checkpoint, policy)
    if not (hf / "adapter_config.json").is_file():
        yield str(hf)
        return
    tmp = Path(tempfile.mkdtemp(prefix="evoforge-eval-merged-"))
    try:
        merge_adapter(hf, _adapter_base(hf, model_cfg), tmp, model_cfg.dtype)
        yield str(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _adapter_base(adapter: Path, model_cfg) -> str:
    """The adapter's base model when that folder exists here, else the base model of `model_cfg`."""
    from trainers.models import prepare_model

    base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if base and (Path(base).expanduser() / "config.json").is_file():
        return str(Path(base).expanduser())
    return prepare_model(model_cfg)


def merge_adapter(adapter: Path, base: str, out: Path, dtype: str = "float32") -> Path:
    """Save base model + PEFT adapter, merged, as a plain HF folder `out` (with the tokenizer)."""
    from peft import PeftModel

    from trainers.models import load_causal_lm, load_tokenizer

    merged = PeftModel.from_pretrained(load_causal_lm(base, dtype), str(adapter)).merge_and_unload()
    merged.save_pretrained(out)
    has_tokenizer = (adapter / "tokenizer_config.json").is_file()
    load_tokenizer(str(adapter) if has_tokenizer else base).save_pretrained(out)
    return out
