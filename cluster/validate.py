"""Checks across config keys that types alone cannot express; run before anything starts."""
from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    pass


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg) -> None:
    a, lc, rc = cfg.algorithm, cfg.learner, cfg.rollout
    samples = a.prompts_per_step * rc.sampling.n
    _check(a.aggregation in ("token_mean", "seq_mean", "seq_sum"),
           f"algorithm.aggregation={a.aggregation!r}: use token_mean, seq_mean or seq_sum")
    _check(a.kl_estimator in ("k1", "k2", "k3"), f"algorithm.kl_estimator={a.kl_estimator!r}: use k1, k2 or k3")
    _check(lc.zero_stage in (0, 1, 2, 3), f"learner.zero_stage={lc.zero_stage}: use 2 or 3 (0 and 1 also work)")
    _check(lc.world_size >= 1, f"learner.world_size={lc.world_size}: must be at least 1")
    _check(rc.num_workers >= 1, f"rollout.num_workers={rc.num_workers}: must be at least 1")
    _check(rc.sampling.n >= 1, f"rollout.sampling.n={rc.sampling.n}: must be at least 1")
    _check(a.updates_per_step >= 1, f"algorithm.updates_per_step={a.updates_per_step}: must be at least 1")
    per_update = lc.world_size * a.updates_per_step
    _check(samples % per_update == 0,
           f"algorithm.prompts_per_step * rollout.sampling.n = {samples} samples must split evenly over "
           f"learner.world_size * algorithm.updates_per_step = {per_update}")
    local = samples // per_update
    _check(lc.micro_batch_size == 0 or local % lc.micro_batch_size == 0,
           f"learner.micro_batch_size={lc.micro_batch_size} must divide the {local} samples each rank gets per update")
    _check(rc.weight_sync in ("auto", "object_store", "broadcast"),
           f"rollout.weight_sync={rc.weight_sync!r}: use auto, object_store or broadcast")
    if rc.colocate:
        _check(rc.backend == "vllm", "rollout.colocate=true needs rollout.backend=vllm (it uses vLLM's sleep mode)")
        _check(rc.gpus_per_worker > 0 and lc.gpus_per_rank > 0,
               "rollout.colocate=true needs GPUs: set rollout.gpus_per_worker and learner.gpus_per_rank "
               "(e.g. 0.5 each to share a GPU); vLLM's sleep mode frees GPU memory only")
        _check(rc.weight_sync != "broadcast",
               "rollout.colocate=true with rollout.weight_sync=broadcast: NCCL cannot connect two processes on "
               "the same GPU; use weight_sync=object_store (or auto)")
    sp = cfg.selfplay
    if sp.enabled:
        _check(sp.reward in ("learnability", "min"), f"selfplay.reward={sp.reward!r}: use learnability or min")
        _check(sp.review in ("policy", "judge", "fixed_yes"),
               f"selfplay.review={sp.review!r}: use policy, judge or fixed_yes")
        _check(sp.review != "judge" or bool(sp.judge_model), "selfplay.review=judge needs selfplay.judge_model")
        _check(len(sp.band) == 2 and 0.0 <= sp.band[0] <= sp.band[1] <= 1.0,
               f"selfplay.band={list(sp.band)}: two pass rates low <= high in [0, 1]")
        _check(sp.generator_every >= 1 and sp.proposals >= 1 and sp.samples_per_proposal >= 1,
               "selfplay.generator_every, selfplay.proposals and selfplay.samples_per_proposal must be at least 1")
        _check(sp.keep_proposals >= 0, f"selfplay.keep_proposals={sp.keep_proposals}: a number of steps >= 0 (0 = all)")
        _check(bool(sp.difficulties) and bool(sp.gate_difficulties),
               "selfplay.difficulties and selfplay.gate_difficulties must not be empty")
        gen = sp.proposals * sp.samples_per_proposal
        _check(gen % per_update == 0,
               f"selfplay.proposals * selfplay.samples_per_proposal = {gen} generator samples must split evenly "
               f"over learner.world_size * algorithm.updates_per_step = {per_update}")
        _check(gen <= samples and (lc.micro_batch_size == 0 or gen == samples),
               f"selfplay: {gen} generator samples per step must be at most the {samples} solver samples "
               "(equal to them when learner.micro_batch_size is set), so both fit the learner's batch layout")
        _check(sp.max_new_tokens < rc.max_model_len,
               f"selfplay.max_new_tokens={sp.max_new_tokens} leaves no room for the generator prompt in "
               f"rollout.max_model_len={rc.max_model_len}")
        _check(not sp.heldout or "reasoning_gym" in cfg.env.sandbox.extra_imports,
               "selfplay.heldout runs Reasoning Gym tasks: add reasoning_gym to env.sandbox.extra_imports")
        missing = [f for f in sp.fixed_proposals if not Path(f).is_file()]
        _check(not missing, f"selfplay.fixed_proposals: no such file {missing[0] if missing else ''}")
        _check(not cfg.env.library or Path(cfg.env.library).is_dir(),
               f"env.library={cfg.env.library!r}: no such directory (a self-play run directory or its library/)")
        _check(cfg.env.kind == "file", "selfplay trains on its own environment library: env.kind must be 'file'")
    _check(cfg.steps >= 0, f"steps={cfg.steps}: must be >= 0")
    _check(cfg.env.num_executors >= 1 and cfg.env.workers_per_executor >= 1,
           "env.num_executors and env.workers_per_executor must be at least 1")
    _check(cfg.logger.wandb.mode in ("offline", "online", "disabled"),
           f"logger.wandb.mode={cfg.logger.wandb.mode!r}: use offline, online or disabled")
