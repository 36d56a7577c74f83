"""Checks across config keys that types alone cannot express; run before anything starts."""
from __future__ import annotations

from cluster.config.errors import ConfigError
from cluster.config.seeds import FEWSHOT_MAX


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg) -> None:
    from cluster.config.schema import resolve_policies

    a = cfg.algorithm
    _check(a.aggregation in ("token_mean", "seq_mean", "seq_sum"),
           f"algorithm.aggregation={a.aggregation!r}: use token_mean, seq_mean or seq_sum")
    _check(a.kl_estimator in ("k1", "k2", "k3"), f"algorithm.kl_estimator={a.kl_estimator!r}: use k1, k2 or k3")
    _check(a.updates_per_step >= 1, f"algorithm.updates_per_step={a.updates_per_step}: must be at least 1")
    _check(a.prompts_per_step >= 1, f"algorithm.prompts_per_step={a.prompts_per_step}: must be at least 1")
    _check(a.dpo.loss_type in ("sigmoid", "ipo"), f"algorithm.dpo.loss_type={a.dpo.loss_type!r}: use sigmoid or ipo")
    _check(a.dpo.beta > 0, f"algorithm.dpo.beta={a.dpo.beta}: must be > 0")
    _check(0.0 <= a.dpo.label_smoothing < 0.5,
           f"algorithm.dpo.label_smoothing={a.dpo.label_smoothing}: must be in [0, 0.5)")
    _check(0.0 <= a.ema_baseline < 1.0, f"algorithm.ema_baseline={a.ema_baseline}: a decay in [0, 1) (0 = off)")
    policies = resolve_policies(cfg)
    for name, p in policies.items():
        where = "" if not cfg.policies else f"policies.{name}."
        _policy(p.learner, p.rollout, where)
    _episodes(cfg, policies)
    _judges(cfg)
    _heldout(cfg)
    _check(0 <= cfg.env.fewshot <= FEWSHOT_MAX,
           f"env.fewshot={cfg.env.fewshot}: solved examples per prompt, 0 to {FEWSHOT_MAX}")
    _check(cfg.logger.worker_logs in ("file", "console"),
           f"logger.worker_logs={cfg.logger.worker_logs!r}: use file or console")
    if cfg.env.rg_config:
        _check(cfg.env.kind == "reasoning_gym", f"env.rg_config={dict(cfg.env.rg_config)} sets Reasoning Gym dataset "
                                                f"parameters; env.kind={cfg.env.kind!r} is not reasoning_gym")
        from envs.adapters.reasoning_gym import DatasetConfigError, check_config

        try:
            check_config(cfg.env.name.removeprefix("rg_"), cfg.env.rg_config)
        except (DatasetConfigError, KeyError) as e:
            raise ConfigError(str(e) if isinstance(e, DatasetConfigError) else f"env.name={cfg.env.name!r}: "
                              "not a Reasoning Gym dataset") from None
    _check(cfg.steps >= 0, f"steps={cfg.steps}: must be >= 0")
    _check(cfg.env.num_executors >= 1 and cfg.env.workers_per_executor >= 1,
           "env.num_executors and env.workers_per_executor must be at least 1")
    _check(cfg.logger.wandb.mode in ("offline", "online", "disabled"),
           f"logger.wandb.mode={cfg.logger.wandb.mode!r}: use offline, online or disabled")


def _policy(lc, rc, where: str) -> None:
    _check(lc.zero_stage in (0, 1, 2, 3), f"{where}learner.zero_stage={lc.zero_stage}: use 2 or 3 (0 and 1 also work)")
    _check(lc.world_size >= 1, f"{where}learner.world_size={lc.world_size}: must be at least 1")
    for name, lr in lc.objective_lr.items():
        _check(name in ("grpo", "dpo", "sft") and lr > 0,
               f"{where}learner.objective_lr.{name}={lr}: a learning rate > 0 for grpo, dpo or sft")
    _check(lc.threads >= 0, f"{where}learner.threads={lc.threads}: torch threads per rank (0 = the node's cores "
                            "shared by the ranks)")
    _check(lc.compute_dtype in ("auto", "float32", "bfloat16"),
           f"{where}learner.compute_dtype={lc.compute_dtype!r}: use auto, float32 or bfloat16")
    _check(rc.max_staleness >= 0, f"{where}rollout.max_staleness={rc.max_staleness}: steps the rollouts may run "
                                  "ahead of the learner (0 = synchronous)")
    _check(not (rc.colocate and rc.max_staleness > 0),
           f"{where}rollout.max_staleness={rc.max_staleness} overlaps rollouts with the update, but "
           "rollout.colocate=true puts the engines to sleep during it: use one or the other")
    _check(lc.micro_batch_size >= 0, f"{where}learner.micro_batch_size={lc.micro_batch_size}: rows per micro batch "
                                     "(0 = a rank's whole share of an update)")
    _check(rc.num_workers >= 1, f"{where}rollout.num_workers={rc.num_workers}: must be at least 1")
    _check(rc.sampling.n >= 1, f"{where}rollout.sampling.n={rc.sampling.n}: must be at least 1")
    _check(rc.weight_sync in ("auto", "object_store", "broadcast"),
           f"{where}rollout.weight_sync={rc.weight_sync!r}: use auto, object_store or broadcast")
    _check(rc.placement in ("auto", "workers", "learner"),
           f"{where}rollout.placement={rc.placement!r}: use auto, workers or learner")
    if rc.placement == "learner":
        _check(rc.backend == "hf" and rc.num_workers == 1 and not rc.colocate and rc.weight_sync != "broadcast",
               f"{where}rollout.placement=learner hosts one transformers engine in learner rank 0: it needs "
               f"rollout.backend=hf (got {rc.backend}), num_workers=1 (got {rc.num_workers}), colocate=false and "
               f"weight_sync auto or object_store (got {rc.weight_sync})")
    if rc.colocate:
        _check(rc.backend == "vllm", f"{where}rollout.colocate=true needs rollout.backend=vllm (it uses vLLM's "
                                     "sleep mode)")
        _check(rc.gpus_per_worker > 0 and lc.gpus_per_rank > 0,
               f"{where}rollout.colocate=true needs GPUs: set rollout.gpus_per_worker and learner.gpus_per_rank "
               "(e.g. 0.5 each to share a GPU); vLLM's sleep mode frees GPU memory only")
        _check(rc.weight_sync != "broadcast",
               f"{where}rollout.colocate=true with rollout.weight_sync=broadcast: NCCL cannot connect two processes "
               "on the same GPU; use weight_sync=object_store (or auto)")


def _episodes(cfg, policies: dict) -> None:
    """The schedule names known kinds, every role they need maps to a policy, and each family the run uses
    passes its own checks."""
    from cluster.config.schema import resolve_judges
    from cluster.episodes.registry import active_families, default_pattern, episode_kinds

    kinds = episode_kinds()
    pattern = list(cfg.schedule_warmup) + (list(cfg.schedule) or default_pattern(cfg))
    for kind in pattern:
        _check(kind in kinds, f"schedule: unknown episode kind {kind!r}: use {', '.join(kinds)}")
    for role, name in cfg.roles.items():
        _check(name in policies, f"roles.{role}={name!r}: no such policy (policies: {', '.join(policies)})")
    if len(policies) > 1:
        for kind in dict.fromkeys(pattern):
            for role in kinds[kind].roles:
                _check(role in cfg.roles, f"schedule: episode {kind!r} needs role {role!r}: map it with "
                                          f"roles.{role}=<one of {', '.join(policies)}>")
    roles = {role for kind in dict.fromkeys(pattern) for role in kinds[kind].roles}
    for role, responses in cfg.scripted.items():
        _check(role in roles, f"scripted.{role}: no episode of the schedule has role {role!r} "
                              f"(roles: {', '.join(sorted(roles))})")
        _check(len(responses) > 0, f"scripted.{role}: give at least one response")
    judges = resolve_judges(cfg)
    for family in active_families(cfg, pattern):
        if family.config is not None:
            problems = family.settings(cfg).check(cfg, policies, judges)
            _check(not problems, problems[0] if problems else "")


def _judges(cfg) -> None:
    from cluster.config.schema import resolve_judges
    from cluster.runtime.judges import judge_config_problems

    for name, jc in resolve_judges(cfg).items():
        problems = judge_config_problems(name, jc)
        _check(not problems, "; ".join(problems))


def _heldout(cfg) -> None:
    h = cfg.heldout
    if not h.tasks:
        return
    _check(h.instances >= 1, f"heldout.instances={h.instances}: must be at least 1")
    _check(h.samples >= 0, f"heldout.samples={h.samples}: must be >= 0 (0 = greedy only)")
    _check(h.samples == 0 or 1 <= h.k <= h.samples,
           f"heldout.k={h.k}: pass@k needs 1 <= k <= heldout.samples={h.samples}")
    _check(h.samples == 0 or h.temperature > 0, f"heldout.temperature={h.temperature}: must be > 0")
    from cluster.evaluation.heldout import heldout_kind, heldout_sources

    _check("reasoning_gym" in cfg.env.sandbox.extra_imports or
           all(heldout_kind(cfg, t) == "file" for t in h.tasks),
           "heldout.tasks runs Reasoning Gym tasks: add reasoning_gym to env.sandbox.extra_imports")

    heldout_sources(cfg)  # unknown dataset names and bad env.rg_config fail here, before anything starts
