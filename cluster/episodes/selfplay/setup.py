"""Self-play's set-up hook: the generator's scripted stand-in (selfplay.fixed_proposals), the L4 reviewer, and
the environment library, installed as the run's task source and saved with every checkpoint."""
from __future__ import annotations

from pathlib import Path

from cluster.config.schema import JudgeConfig
from cluster.episodes.selfplay.library_loop import EvoEnv
from cluster.runtime.policy import ScriptedPolicy
from cluster.runtime.policy_judges import PolicyJudge, ScriptedJudge


def install(ctx) -> None:
    cfg, sp = ctx.cfg, ctx.cfg.selfplay
    if not sp.enabled:
        return
    if sp.fixed_proposals and "generator" not in cfg.scripted:
        texts = [Path(p).read_text(encoding="utf-8") for p in sp.fixed_proposals]
        ctx.stand_ins["generator"] = ScriptedPolicy(ctx.policy("generator"),
                                                    [f"```python\n{t.rstrip()}\n```" for t in texts])
    if "generator" in ctx.roles:  # the policy reviews what it proposed, unless roles.reviewer says otherwise
        ctx.roles.setdefault("reviewer", ctx.roles["generator"])
    if "review" not in ctx.judges:  # judges.review, when the run names one, reviews instead
        ctx.judges["review"] = reviewer(ctx)
    library = EvoEnv(cfg, ctx.run_dir, ctx.env, ctx.policy("solver"), ctx.judges["review"], ctx.resume_from,
                     shots=ctx.shots)
    ctx.tasks = library
    ctx.parts["selfplay"] = library


def reviewer(ctx):
    """selfplay.review: fixed_yes (a stand-in), policy (the model being trained), or judge (judge_model in a
    worker of its own, served like the rollout engines)."""
    cfg, sp = ctx.cfg, ctx.cfg.selfplay
    if sp.review == "fixed_yes":
        return ScriptedJudge("review", "yes")
    if sp.review == "policy":
        return PolicyJudge("review", ctx.policy("reviewer"), sp.review_max_new_tokens)
    from cluster.runtime.judges import JudgePool

    rc = cfg.rollout
    jc = JudgeConfig(model=sp.judge_model, dtype=cfg.model.dtype, backend=rc.backend,
                     chat_template=cfg.model.chat_template, max_new_tokens=sp.review_max_new_tokens,
                     cpus_per_worker=rc.cpus_per_worker, gpus_per_worker=rc.gpus_per_worker, threads=rc.threads)
    return JudgePool("review", jc, cfg.cluster.placement_strategy, cfg.model)
