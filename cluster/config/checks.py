"""Checks across config keys that types alone cannot express; run before anything starts."""
from __future__ import annotations

from pathlib import Path

from cluster.config.errors import ConfigError
from envs.registry import SEED_SETS


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
    _check(0 <= cfg.env.fewshot <= 16, f"env.fewshot={cfg.env.fewshot}: solved examples per prompt, 0 to 16")
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
        _check(sp.seed_set in SEED_SETS, f"selfplay.seed_set={sp.seed_set!r}: use one of {', '.join(SEED_SETS)}")
        _check(sp.keep_proposals >= 0, f"selfplay.keep_proposals={sp.keep_proposals}: a number of steps >= 0 (0 = all)")
        _check(bool(sp.difficulties) and bool(sp.gate_difficulties),
               "selfplay.difficulties and selfplay.gate_difficulties must not be empty")
        _check(sp.max_new_tokens < cfg.rollout.max_model_len,
               f"selfplay.max_new_tokens={sp.max_new_tokens} leaves no room for the generator prompt in "
               f"rollout.max_model_len={cfg.rollout.max_model_len}")
        missing = [f for f in sp.fixed_proposals if not Path(f).is_file()]
        _check(not missing, f"selfplay.fixed_proposals: no such file {missing[0] if missing else ''}")
        _check(not cfg.env.library or Path(cfg.env.library).is_dir(),
               f"env.library={cfg.env.library!r}: no such directory (a self-play run directory or its library/)")
        _check(cfg.env.kind == "file" or sp.seed_env,
               f"selfplay trains on its own environment library: env.kind={cfg.env.kind!r} is played only with "
               "selfplay.seed_env=true (the run's environment joins the library)")
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
    """The schedule names known kinds, and every role they need maps to a policy."""
    from cluster.episodes import episode_kinds
    from cluster.episodes.schedule import default_pattern

    kinds = episode_kinds()
    pattern = list(cfg.schedule_warmup) + (list(cfg.schedule) or default_pattern(cfg))
    for kind in pattern:
        _check(kind in kinds, f"schedule: unknown episode kind {kind!r}: use {', '.join(kinds)}")
    _check("evoenv" not in pattern or cfg.selfplay.enabled,
           "schedule: the evoenv episode needs self-play (selfplay=evoenv)")
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
    if "propose_critic" in pattern:
        _propose_critic(cfg.episodes.propose_critic)
    if "delta_rubric" in pattern:
        _delta_rubric(cfg.episodes.delta_rubric)
    if "challenger" in pattern:
        _challenger(cfg.episodes.challenger)
    if {"memory_agent", "memory_expert", "memagent"} & set(pattern):
        _memory(cfg, policies)
    if "cso" in pattern:
        from cluster.episodes.cso.episode import check_config

        try:
            check_config(cfg.episodes.cso)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        cc = cfg.episodes.cso
        if cc.prm == "judge":
            from cluster.config.schema import resolve_judges

            jc = resolve_judges(cfg).get(cc.prm_judge)
            _check(jc is not None and jc.kind == "process", f"episodes.cso.prm_judge={cc.prm_judge!r}: needs "
                                                             "judges.<that name> of kind process")
            _check(jc.step_separator == cc.separator, f"judges.{cc.prm_judge}.step_separator="
                                                      f"{jc.step_separator!r} differs from episodes.cso.separator="
                                                      f"{cc.separator!r}: the judge must cut the same steps")
        mine = cfg.episodes.cso.mine_prompts
        _check(mine <= cfg.algorithm.prompts_per_step, f"episodes.cso.mine_prompts={mine}: at most "
                                                        f"algorithm.prompts_per_step={cfg.algorithm.prompts_per_step}")
    t = cfg.episodes.task
    _check(t.objective in ("grpo", "dpo"), f"episodes.task.objective={t.objective!r}: use grpo or dpo")
    _check(t.chosen in ("best", "reference"), f"episodes.task.chosen={t.chosen!r}: use best or reference")
    _check(t.heldout_pairs >= 0, f"episodes.task.heldout_pairs={t.heldout_pairs}: must be >= 0")


def _propose_critic(pc) -> None:
    from envs.critique import RENDERERS

    where = "episodes.propose_critic"
    _check(2 <= pc.k_min <= pc.k_max, f"{where}.k_min={pc.k_min}, k_max={pc.k_max}: need 2 <= k_min <= k_max "
                                      "(the critic picks among at least two candidates)")
    _check(0 < pc.temperature_min <= pc.temperature_max,
           f"{where}.temperature_min={pc.temperature_min}, temperature_max={pc.temperature_max}: need "
           "0 < min <= max")
    _check(pc.critic_samples >= 1, f"{where}.critic_samples={pc.critic_samples}: must be at least 1")
    _check(pc.critic_temperature > 0, f"{where}.critic_temperature={pc.critic_temperature}: must be > 0")
    _check(pc.critic_max_new_tokens >= 1, f"{where}.critic_max_new_tokens={pc.critic_max_new_tokens}: must be >= 1")
    _check(0.0 <= pc.maturity_init <= 1.0, f"{where}.maturity_init={pc.maturity_init}: must be in [0, 1]")
    _check(0.0 <= pc.maturity_decay < 1.0, f"{where}.maturity_decay={pc.maturity_decay}: a decay in [0, 1)")
    _check(pc.weights in ("maturity", "equal"), f"{where}.weights={pc.weights!r}: use maturity or equal")
    _check(pc.render in RENDERERS, f"{where}.render={pc.render!r}: use {', '.join(RENDERERS)}")
    _check(pc.heldout_tasks >= 0, f"{where}.heldout_tasks={pc.heldout_tasks}: must be >= 0 (0 = off)")
    _check(pc.max_candidate_chars >= 1, f"{where}.max_candidate_chars={pc.max_candidate_chars}: must be >= 1")


def _delta_rubric(d) -> None:
    where = "episodes.delta_rubric"
    for key in ("train_tasks", "responses", "checklists", "verifications", "planner_max_new_tokens",
                "verifier_max_new_tokens", "max_checks", "max_response_chars"):
        _check(getattr(d, key) >= 1, f"{where}.{key}={getattr(d, key)}: must be at least 1")
    _check(d.responses >= 2, f"{where}.responses={d.responses}: a pair needs at least two answers per task")
    _check(d.pairs_per_step >= 0, f"{where}.pairs_per_step={d.pairs_per_step}: must be >= 0 (0 = prompts_per_step)")
    _check(d.heldout_tasks >= 0 and d.reward_model_epochs >= 0,
           f"{where}.heldout_tasks and reward_model_epochs must be >= 0 (0 = off)")
    _check(d.temperature > 0, f"{where}.temperature={d.temperature}: must be > 0")
    _check(d.format_bonus >= 0, f"{where}.format_bonus={d.format_bonus}: must be >= 0")
    _check(d.verdict_max_new_tokens >= 1, f"{where}.verdict_max_new_tokens={d.verdict_max_new_tokens}: must be >= 1")
    _check(d.reward_model_lr > 0, f"{where}.reward_model_lr={d.reward_model_lr}: must be > 0")


def _challenger(c) -> None:
    from envs.challenge import CHECKERS

    where = "episodes.challenger"
    _check(c.answers >= 2, f"{where}.answers={c.answers}: a majority needs at least two answers")
    _check(c.examples >= 0 and c.max_new_tokens >= 1 and c.max_question_chars >= 1,
           f"{where}.examples must be >= 0, max_new_tokens and max_question_chars >= 1")
    _check(len(c.band) == 2 and 0.0 <= c.band[0] <= c.band[1] <= 1.0,
           f"{where}.band={list(c.band)}: two agreement rates low <= high in [0, 1]")
    _check(0.0 < c.repetition_threshold <= 1.0, f"{where}.repetition_threshold={c.repetition_threshold}: in (0, 1]")
    _check(c.repetition_weight >= 0, f"{where}.repetition_weight={c.repetition_weight}: must be >= 0")
    _check(c.checker in CHECKERS, f"{where}.checker={c.checker!r}: use {', '.join(CHECKERS)}")
    _check("{question}" in c.solver_template, f"{where}.solver_template must contain {{question}}")


def _memory(cfg, policies: dict) -> None:
    from envs.longdoc import KINDS

    m, where = cfg.episodes.memory, "episodes.memory"
    _check(m.kinds and all(k in KINDS for k in m.kinds), f"{where}.kinds={list(m.kinds)}: use some of {', '.join(KINDS)}")
    _check(m.lengths and all(200 <= n <= 200_000 for n in m.lengths),
           f"{where}.lengths={list(m.lengths)}: document lengths in words, each in 200..200000")
    for key in ("max_turns", "max_context", "turn_max_new_tokens", "max_malformed", "answer_max_new_tokens",
                "truncated_words", "memagent_chunk_words", "memagent_memory_tokens", "memagent_max_chunks"):
        _check(getattr(m, key) >= 1, f"{where}.{key}={getattr(m, key)}: must be at least 1")
    _check(min(m.tasks_per_step, m.expert_tasks_per_step, m.heldout_tasks) >= 0,
           f"{where}.tasks_per_step, expert_tasks_per_step and heldout_tasks must be >= 0")
    _check(0.0 <= m.expert_free_context_at <= 1.0,
           f"{where}.expert_free_context_at={m.expert_free_context_at}: a fraction of max_context in [0, 1]")
    _check(m.tool_timeout_s > 0, f"{where}.tool_timeout_s={m.tool_timeout_s}: must be > 0")
    _check(m.context_penalty >= 0, f"{where}.context_penalty={m.context_penalty}: must be >= 0")
    _check(16 <= m.expert_chunk_size and 0 <= m.expert_overlap < m.expert_chunk_size,
           f"{where}.expert_chunk_size={m.expert_chunk_size}, expert_overlap={m.expert_overlap}: need chunk size "
           ">= 16 and 0 <= overlap < chunk size")
    for name in m.heldout_baselines:
        _check(name in ("truncated", "memagent"), f"{where}.heldout_baselines: unknown {name!r}: use truncated, "
                                                  "memagent")
    agent = policies[cfg.roles.get("agent", next(iter(policies)))]
    _check(m.max_context <= agent.rollout.max_model_len,
           f"{where}.max_context={m.max_context} exceeds the agent's rollout.max_model_len="
           f"{agent.rollout.max_model_len}: raise max_model_len or lower max_context")
    _check(m.turn_max_new_tokens < m.max_context,
           f"{where}.turn_max_new_tokens={m.turn_max_new_tokens} must be below max_context={m.max_context}")


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
