"""The `cso` family's settings (episodes.cso) and their checks."""
from __future__ import annotations

from dataclasses import dataclass

from cluster.config.errors import failed


PRM_KINDS = ("mc", "trained", "judge")
EXPERTS = ("policy", "oracle")


@dataclass
class CSOConfig:
    """`cso`: critical-step optimisation (cluster/episodes/cso/episode.py). Failed trajectories on verifiable tasks are
    cut into steps; a process reward picks the critical ones; the expert proposes other steps; the policy continues
    from each; an alternative whose continuation succeeds becomes a DPO pair against the original step."""
    mine_prompts: int = 0  # prompts sampled per step to mine failures; 0: algorithm.prompts_per_step
    separator: str = "\n"  # steps end where this ends (lines; or a step marker)
    max_failed: int = 8  # failed trajectories expanded per step (in sample order, while within rollout_budget)
    candidates: int = 1  # c: critical candidates per failed trajectory, the lowest-scored steps
    alternatives: int = 4  # k: the expert's proposals per candidate (duplicates and the original step dropped)
    expert: str = "policy"  # policy: the expert role's policy (default: the solver's own) | oracle: the reference
    expert_temperature: float = 1.2
    step_max_new_tokens: int = 32  # one proposed step
    prm: str = "mc"  # mc: Monte-Carlo values | trained: a PRM trained on them | judge: judges.<prm_judge>
    prm_judge: str = ""  # prm=judge: a judge of kind process
    mc_samples: int = 4  # policy continuations per step for its Monte-Carlo value
    branch_samples: int = 4  # policy continuations from each alternative (prm=mc: its value)
    chosen_min: float = 0.6  # a pair needs PRM(chosen) >= chosen_min ...
    rejected_max: float = 0.5  # ... and PRM(rejected) <= rejected_max, and a continuation that succeeds
    rollout_budget: int = 0  # sequences generated per step, every stage counted; 0: no cap
    # prm=trained: the first prm_warmup_steps CSO runs score by Monte-Carlo values, whose steps then train the PRM
    prm_warmup_steps: int = 2
    prm_heldout_every: int = 4  # every k-th failed trajectory's steps are held out: the PRM's agreement with MC
    prm_model: str = ""  # a causal-LM or sequence-classification folder; "": the solver's model
    prm_trainable: str = "head"  # head (a one-logit head on the frozen backbone) | all
    prm_lr: float = 1.0e-3
    prm_epochs: int = 8

    def check(self, cfg, policies: dict, judges: dict) -> list[str]:
        where = "episodes.cso"
        problems = failed(
            (self.prm in PRM_KINDS, f"{where}.prm={self.prm!r}: use {', '.join(PRM_KINDS)}"),
            (self.expert in EXPERTS, f"{where}.expert={self.expert!r}: use {', '.join(EXPERTS)}"),
            (self.prm != "judge" or bool(self.prm_judge),
             f"{where}.prm=judge needs {where}.prm_judge=<a judges.<name> of kind process>"),
            (self.mine_prompts >= 0 and self.rollout_budget >= 0,
             f"{where}.mine_prompts={self.mine_prompts}, rollout_budget={self.rollout_budget}: must be >= 0 "
             "(0: prompts_per_step; no cap)"),
            *((getattr(self, name) >= 1, f"{where}.{name}={getattr(self, name)}: must be >= 1")
              for name in ("candidates", "alternatives", "mc_samples", "branch_samples")),
            (0.0 <= self.rejected_max <= 1.0 and 0.0 <= self.chosen_min <= 1.0,
             f"{where} thresholds chosen_min={self.chosen_min}, rejected_max={self.rejected_max}: must lie in [0, 1]"))
        if self.prm == "judge" and self.prm_judge:
            jc = judges.get(self.prm_judge)
            problems += failed((jc is not None and jc.kind == "process",
                                f"{where}.prm_judge={self.prm_judge!r}: needs judges.<that name> of kind process"))
            if jc is not None and jc.kind == "process":
                problems += failed((jc.step_separator == self.separator,
                                    f"judges.{self.prm_judge}.step_separator={jc.step_separator!r} differs from "
                                    f"{where}.separator={self.separator!r}: the judge must cut the same steps"))
        prompts = cfg.algorithm.prompts_per_step
        return problems + failed((self.mine_prompts <= prompts, f"{where}.mine_prompts={self.mine_prompts}: at most "
                                                                f"algorithm.prompts_per_step={prompts}"))
