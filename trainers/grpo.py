"""One GRPO update on a model, in plain torch (the learner actor wraps it with DeepSpeed): per-token logprobs,
the behaviour/learner logprob gap and the loss of one micro batch (the plan is trainers/update_plan.py)."""
from __future__ import annotations

import torch

from trainers.batch import Batch
from trainers.logprobs import gathered_logprobs, token_logprobs
from trainers.losses import PolicyLossConfig, policy_loss

# the scored columns alone when they are fewer than this share of the run from the first one to the end: a
# gather of hidden states and a scatter of logprobs cost little, but not nothing
SPARSE_BELOW = 0.75


def first_scored_column(batch: Batch) -> int:
    """The first column of loss_mask that any row scores (0 when none does)."""
    cols = batch.loss_mask.any(0).nonzero()
    return int(cols[0]) if len(cols) else 0


def sequence_logprobs(model, batch: Batch, temperature: float) -> torch.Tensor:
    """Per-token logprobs [B, T-1] of input_ids[:, t + 1] under `model` (mask not applied).

    The LM head runs only where some row scores a token (`logits_to_keep`): prompt positions need no logits,
    and on a 49k vocabulary they are a fifth of the model's compute. A batch scored on one run of columns
    keeps that run; one with gaps (multi-turn segments whose tool outputs are not trained on) keeps just its
    scored columns. Columns no row scores are 0, and every row's loss mask is 0 there."""
    B, T = batch.input_ids.shape
    cols = batch.loss_mask.any(0).nonzero().flatten()
    first = int(cols[0]) if len(cols) else 0
    if len(cols) and len(cols) < (T - 1 - first) * SPARSE_BELOW:
        out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False,
                    logits_to_keep=cols)
        scored = gathered_logprobs(out.logits, batch.input_ids[:, cols + 1], temperature)
        return torch.zeros(B, T - 1, dtype=scored.dtype, device=scored.device).index_copy(1, cols, scored)
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False,
                logits_to_keep=T - first)
    scored = token_logprobs(out.logits, batch.input_ids[:, first:], temperature)
    return torch.nn.functional.pad(scored, (first, 0)) if first else scored


@torch.no_grad()
def recompute_old_logprobs(model, micro: Batch, temperature: float) -> torch.Tensor:
    """The learner's own logprobs of the sampled tokens before the update (pi_old for truncated IS)."""
    return sequence_logprobs(model, micro, temperature)


def logprob_gap(logprobs: torch.Tensor, behaviour: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Behaviour/learner mismatch on the trained tokens: mean and max |learner - sampler| logprob."""
    diff = (logprobs.detach() - behaviour).abs() * mask
    n = float(mask.sum())
    return {"logprob_gap/mean_abs": float(diff.sum()) / max(n, 1.0), "logprob_gap/max_abs": float(diff.max()) if n else 0.0}


def micro_batch_loss(model, micro: Batch, cfg: PolicyLossConfig, normalizer: float, temperature: float,
                     ref_model=None, learner_old: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one micro batch. With `learner_old` (recomputed pi_old), the batch's behaviour logprobs
    only enter through the truncated-IS weight; without it they are pi_old themselves. Per-token
    advantages (micro.token_advantages) replace the per-sequence ones when present."""
    logprobs = sequence_logprobs(model, micro, temperature)
    ref = None
    if ref_model is not None and cfg.kl_coef > 0:
        with torch.no_grad():
            ref = sequence_logprobs(ref_model, micro, temperature)
    old, behaviour = (micro.old_logprobs, None) if learner_old is None else (learner_old, micro.old_logprobs)
    advantages = micro.token_advantages if micro.token_advantages is not None else micro.advantages
    loss, metrics = policy_loss(logprobs, old, advantages, micro.loss_mask, cfg,
                                ref_logprobs=ref, behaviour_logprobs=behaviour, normalizer=normalizer)
    metrics.update(logprob_gap(logprobs if learner_old is None else learner_old, micro.old_logprobs, micro.loss_mask))
    return loss, metrics
