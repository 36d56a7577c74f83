"""The `delta_rubric` family's settings (episodes.delta_rubric) and their checks."""
from __future__ import annotations

from dataclasses import dataclass

from cluster.config.errors import failed


@dataclass
class DeltaRubricConfig:
    """`delta_rubric`: one model as Disagreement Planner (a checklist that separates responses A and B) and
    Checklist Verifier (runs it, states a preference). Pairs: a response the environment accepts vs a wrong one
    for the same task, the wrong ones (and, where it has them, the right ones) the policy's own answers."""
    train_tasks: int = 64  # tasks whose pairs the roles train on
    pairs_per_step: int = 0  # train pairs drawn per step; 0: algorithm.prompts_per_step
    heldout_tasks: int = 32  # tasks no step draws: their pairs are measured before and after, in both orders
    responses: int = 8  # the policy's answers per task, from which a correct and a wrong one make the pair
    checklists: int = 2  # planner samples per pair (the planner's group)
    verifications: int = 4  # verifier samples per checklist (M: the verifier's group; the planner's reward)
    temperature: float = 1.0
    planner_max_new_tokens: int = 64
    verifier_max_new_tokens: int = 64
    max_checks: int = 3
    max_response_chars: int = 400  # each response is cut to this many characters when shown
    format_bonus: float = 0.1  # verifier reward: 1 for the right preference, plus this for a parseable one
    # written after the verifier's checks (not trained on); the verdict is the A or B it then writes in at most
    # verdict_max_new_tokens tokens. "": the verifier ends with its own "Preference: A|B" line
    verdict_prefix: str = "\nPreference:"
    verdict_max_new_tokens: int = 2
    # each drawn pair shown in both orders in the same step, the verifier's GRPO group being the pair's verdicts
    # over both (every checklist): a verifier that names the same letter whatever stands there is right in one
    # order and wrong in the other, so its group's advantages favour reading the responses. Off: one random order
    # per drawn pair, a group per checklist (where a position-biased verifier earns one reward and learns nothing)
    both_orders: bool = False
    direct_baseline: bool = True  # the same model judging without a checklist, on the held-out pairs
    reward_model_epochs: int = 0  # a scalar reward model trained on the train pairs (epochs; 0 = no baseline)
    reward_model_lr: float = 1.0e-5

    def check(self, cfg, policies: dict, judges: dict) -> list[str]:
        where = "episodes.delta_rubric"
        return failed(
            *((getattr(self, key) >= 1, f"{where}.{key}={getattr(self, key)}: must be at least 1")
              for key in ("train_tasks", "responses", "checklists", "verifications", "planner_max_new_tokens",
                          "verifier_max_new_tokens", "max_checks", "max_response_chars")),
            (self.responses >= 2, f"{where}.responses={self.responses}: a pair needs at least two answers per task"),
            (self.pairs_per_step >= 0,
             f"{where}.pairs_per_step={self.pairs_per_step}: must be >= 0 (0 = prompts_per_step)"),
            (self.heldout_tasks >= 0 and self.reward_model_epochs >= 0,
             f"{where}.heldout_tasks and reward_model_epochs must be >= 0 (0 = off)"),
            (self.temperature > 0, f"{where}.temperature={self.temperature}: must be > 0"),
            (self.format_bonus >= 0, f"{where}.format_bonus={self.format_bonus}: must be >= 0"),
            (self.verdict_max_new_tokens >= 1,
             f"{where}.verdict_max_new_tokens={self.verdict_max_new_tokens}: must be >= 1"),
            (self.reward_model_lr > 0, f"{where}.reward_model_lr={self.reward_model_lr}: must be > 0"))
