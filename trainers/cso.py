"""Critical-step optimisation (CSO) pieces on token ids: steps, candidate critical steps, step-level DPO pairs.

    steps      <- split_steps(response ids): token spans, each ending where the separator ends (ids never
                  re-tokenised: the spans cut the sampled ids)
    candidates <- critical_candidates(step scores, c): the c lowest-scored steps (the process reward model's)
    pair       <- step_pair(...) when keep_pair(...): chosen = the expert's alternative step, rejected = the
                  original step, the same prompt + earlier steps before both; the DPO loss sees only the two
                  differing steps (their continuations, if kept, carry loss mask 0)
"""
from __future__ import annotations

from trainers.batch import Trajectory


def split_steps(ids: list[int], tokenizer, separator: str = "\n") -> list[tuple[int, int]]:
    """[start, end) token spans covering `ids` in order; a step ends with the token in which a separator ends.
    Steps holding only whitespace join the step after them (a blank line is not a step)."""
    if not separator:
        raise ValueError("a step separator must not be empty")
    ends, text, k = [], "", 0
    for i in range(len(ids)):
        text = tokenizer.decode(ids[:i + 1], skip_special_tokens=False)
        while (hit := text.find(separator, k)) != -1 and hit + len(separator) <= len(text):
            k = hit + len(separator)
            if not ends or ends[-1] != i + 1:
                ends.append(i + 1)
    if not ends or ends[-1] != len(ids):
        ends.append(len(ids))
    spans, start = [], 0
    for end in ends:
        if end > start and tokenizer.decode(ids[start:end], skip_special_tokens=True).strip():
            spans.append((start, end))
            start = end
    if start < len(ids):  # trailing whitespace joins the last step
        spans[-1:] = [(spans[-1][0] if spans else start, len(ids))]
    return spans


def critical_candidates(scores: list[float], count: int) -> list[int]:
    """The indices of the `count` lowest-scored steps, lowest first (ties: the earlier step)."""
    if count < 0:
        raise ValueError(f"count={count}: must be >= 0")
    return sorted(range(len(scores)), key=lambda i: (scores[i], i))[:count]


def keep_pair(chosen_score: float, rejected_score: float, continuation_succeeded: bool,
              chosen_min: float = 0.6, rejected_max: float = 0.5) -> bool:
    """An alternative becomes a pair only if the policy's continuation from it succeeds and the PRM scores the
    alternative at least chosen_min and the original step at most rejected_max."""
    return bool(continuation_succeeded) and chosen_score >= chosen_min and rejected_score <= rejected_max


def step_pair(prompt_ids: list[int], prefix_ids: list[int], chosen_step: list[int], rejected_step: list[int],
              pair_id: int, role: str = "solver", continuation: list[int] | None = None) -> list[Trajectory]:
    """(chosen, rejected) DPO rows over the shared prompt + earlier steps; `continuation` (the policy's ids after
    the alternative) may follow the chosen step with loss mask 0, so only the differing steps are scored."""
    if not chosen_step or not rejected_step:
        raise ValueError("a step pair needs a non-empty chosen and rejected step")
    if chosen_step == rejected_step:
        raise ValueError("the alternative step equals the original step: no preference to learn")
    after = list(continuation or [])
    chosen = Trajectory(prompt_ids=prompt_ids + prefix_ids, response_ids=chosen_step + after, behaviour_logprobs=[],
                        loss_mask=[1] * len(chosen_step) + [0] * len(after), role=role, episode="cso",
                        pair_id=pair_id, chosen=True)
    rejected = Trajectory(prompt_ids=prompt_ids + prefix_ids, response_ids=list(rejected_step), behaviour_logprobs=[],
                          loss_mask=[1] * len(rejected_step), role=role, episode="cso", pair_id=pair_id, chosen=False)
    return [chosen, rejected]


def monte_carlo_value(outcomes: list[float]) -> float:
    """A step's value: the fraction of the continuations from it that succeed (reward >= 1)."""
    if not outcomes:
        raise ValueError("a Monte-Carlo step value needs at least one continuation")
    return sum(o >= 1.0 for o in outcomes) / len(outcomes)
