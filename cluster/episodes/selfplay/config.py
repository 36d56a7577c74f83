"""Self-play's settings (the top-level `selfplay` group, conf/selfplay/) and their checks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from cluster.config.errors import failed


@dataclass
class SelfPlayConfig:
    """EvoEnv self-play: the policy writes environments; admitted ones join the library it trains on."""
    enabled: bool = False
    generator_every: int = 3  # one generator step after every k solver steps
    proposals: int = 4  # generator prompts per generator step
    samples_per_proposal: int = 2  # responses per generator prompt (its GRPO group)
    examples: int = 2  # library environments shown in a generator prompt
    example_chars: int = 1200  # each example's source is cut to about this many characters
    # what a new environment should be about: each generator prompt names one, drawn at random (empty: none)
    topics: list[str] = field(default_factory=list)
    max_new_tokens: int = 768  # generator response budget
    # the start of every generator response, written for the model (it continues from there), e.g. the
    # opening of the file: "```python\nimport random\n\n\nclass "; the gates read prefix + continuation
    response_prefix: str = ""
    # gate pass rates of the generator on this many fixed prompts (x samples_per_proposal), before the first
    # step and after the last: run_dir/generator_eval_{before,after}.json (0 = off)
    generator_heldout: int = 0
    temperature: float = 1.0
    reward: str = "learnability"  # learnability: 1 - p (Absolute Zero) | min: min(p, 1 - p) (R-Zero)
    partial_credit: float = 0.0  # reward per gate passed for proposals that fail a gate (0 = off)
    # L4 semantic self-review by: policy (the model being trained) | judge (judge_model in its own worker) |
    # fixed_yes (a stand-in reviewer that always answers "yes", for tests and scripted runs)
    review: str = "policy"
    judge_model: Optional[str] = None
    review_max_new_tokens: int = 8
    gate_seeds: int = 4  # L2: instances per difficulty
    gate_difficulties: list[int] = field(default_factory=lambda: [1, 2, 3])
    gate_bound: float = 0.05  # L3: highest mean score an empty/constant/random answer may get
    calibration_instances: int = 8  # L5: N instances x n rollouts
    calibration_rollouts: int = 4
    band: list[float] = field(default_factory=lambda: [0.2, 0.8])  # L5: admitted solver pass rates
    difficulties: list[int] = field(default_factory=lambda: [1, 2, 3, 5, 8])  # knob values L5 searches
    code_threshold: float = 0.6  # novelty: code similarity (normalised AST shingles) that counts as a copy
    prompt_threshold: float = 0.4  # novelty: prompt-text similarity that counts as a copy
    retire_window: int = 3  # solver steps of usage a retirement decision looks at
    retire_above: Optional[float] = None  # retire when recent p is above this (default: band[1])
    min_active: int = 2  # never retire below this many active environments
    seed_library: bool = True  # start the library from hand-written environments (seed_set)
    # which: puzzles (the ten seed puzzles, envs/seeds) | starters (six short easy tasks, envs/starters: a
    # 135M model solves some and writes files like them) | all
    seed_set: str = "puzzles"
    # the run's own environment (env.name, with env.rg_config) joins the library too (kind "task"): the solver
    # trains on it beside the seeds and what the generator adds; it is never shown as a generator example
    seed_env: bool = False
    # the L5 difficulty search for library environments without a calibration (the seeds) at the start,
    # cached per model and environment version (cluster/episodes/selfplay/calibration.py)
    calibrate_library: bool = True
    # Stand-in for tests and scripted runs: environment source files used as the generator's responses
    # (in order, cycling) instead of sampling the policy; every gate still runs on them.
    fixed_proposals: list[str] = field(default_factory=list)
    # run_dir/proposals/ keeps the step files (every proposal with its response and gate reports) of the
    # newest this many generator steps; older ones are deleted (0 = keep all). The report's rejection
    # reasons stay whole (proposals/rejections.json counts the run). 500 steps of files are tens of MB at
    # most with the defaults, and every run under ~2000 steps (generator_every=3) keeps all of them.
    keep_proposals: int = 500

    def check(self, cfg, policies: dict, judges: dict) -> list[str]:
        from pathlib import Path

        from envs.registry import SEED_SETS

        pattern = list(cfg.schedule_warmup) + list(cfg.schedule)
        problems = failed(("evoenv" not in pattern or self.enabled,
                           "schedule: the evoenv episode needs self-play (selfplay=evoenv)"))
        if not self.enabled:
            return problems
        missing = [f for f in self.fixed_proposals if not Path(f).is_file()]
        return problems + failed(
            (self.reward in ("learnability", "min"), f"selfplay.reward={self.reward!r}: use learnability or min"),
            (self.review in ("policy", "judge", "fixed_yes"),
             f"selfplay.review={self.review!r}: use policy, judge or fixed_yes"),
            (self.review != "judge" or bool(self.judge_model), "selfplay.review=judge needs selfplay.judge_model"),
            (len(self.band) == 2 and 0.0 <= self.band[0] <= self.band[1] <= 1.0,
             f"selfplay.band={list(self.band)}: two pass rates low <= high in [0, 1]"),
            (self.generator_every >= 1 and self.proposals >= 1 and self.samples_per_proposal >= 1,
             "selfplay.generator_every, selfplay.proposals and selfplay.samples_per_proposal must be at least 1"),
            (self.seed_set in SEED_SETS, f"selfplay.seed_set={self.seed_set!r}: use one of {', '.join(SEED_SETS)}"),
            (self.keep_proposals >= 0,
             f"selfplay.keep_proposals={self.keep_proposals}: a number of steps >= 0 (0 = all)"),
            (bool(self.difficulties) and bool(self.gate_difficulties),
             "selfplay.difficulties and selfplay.gate_difficulties must not be empty"),
            (self.max_new_tokens < cfg.rollout.max_model_len,
             f"selfplay.max_new_tokens={self.max_new_tokens} leaves no room for the generator prompt in "
             f"rollout.max_model_len={cfg.rollout.max_model_len}"),
            (not missing, f"selfplay.fixed_proposals: no such file {missing[0] if missing else ''}"),
            (not cfg.env.library or Path(cfg.env.library).is_dir(),
             f"env.library={cfg.env.library!r}: no such directory (a self-play run directory or its library/)"),
            (cfg.env.kind == "file" or self.seed_env,
             f"selfplay trains on its own environment library: env.kind={cfg.env.kind!r} is played only with "
             "selfplay.seed_env=true (the run's environment joins the library)"))
