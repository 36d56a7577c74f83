"""Clipped policy-gradient loss (PPO/GRPO/DAPO/Dr.GRPO variants) with an optional KL penalty."""
from __future__ import annotations

from dataclasses import dataclass

import torch

# exp() of a log-ratio beyond this overflows or dominates the batch; clamp as veRL does.
MAX_LOG_RATIO = 20.0


@dataclass
class PolicyLossConfig:
    clip_low: float = 0.2
    clip_high: float = 0.2  # DAPO clip-higher uses e.g. 0.28
    aggregation: str = "token_mean"  # "token_mean" | "seq_mean" | "seq_sum" (Dr.GRPO)
    kl_coef: float = 0.0
    kl_estimator: str = "k3"  # Schulman's k1/k2/k3 estimators of KL(policy || ref)
    max_tokens: int | None = None  # constant divisor for seq_sum
    tis_cap: float | None = None  # truncated importance sampling cap, see policy_loss


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token estimate of KL(policy || ref) from samples of the policy."""
    log_r = (ref_logprobs - logprobs).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)  # log(ref / policy)
    if estimator == "k1":
        return -log_r
    if estimator == "k2":
        return 0.5 * log_r**2
    if estimator == "k3":
        return torch.exp(log_r) - log_r - 1
    raise ValueError(f"unknown kl_estimator {estimator!r}")


def _aggregate(per_token: torch.Tensor, mask: torch.Tensor, cfg: PolicyLossConfig, normalizer) -> torch.Tensor:
    def div(count):  # a zero count only happens with an all-zero numerator: avoid 0/0
        d = float(normalizer) if normalizer is not None else count
        return d if d > 0 else 1.0

    total = per_token.sum()
    if cfg.aggregation == "token_mean":
        return total / div(mask.sum().item())
    if cfg.aggregation == "seq_mean":
        seq = per_token.sum(1) / mask.sum(1).clamp(min=1)
        return seq.sum() / div(mask.shape[0])
    if cfg.aggregation == "seq_sum":
        if not cfg.max_tokens:
            raise ValueError("seq_sum aggregation needs cfg.max_tokens")
        return total / (cfg.max_tokens * div(mask.shape[0]))
    raise ValueError(f"unknown aggregation {cfg.aggregation!r}")


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    cfg: PolicyLossConfig,
    ref_logprobs: torch.Tensor | None = None,
    behaviour_logprobs: torch.Tensor | None = None,
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate loss; token tensors are [B, T-1], advantages [B] (one per sequence) or [B, T-1]
    (one per token, e.g. process rewards).

    `normalizer` replaces the local divisor (token count for token_mean, sequence count for
    seq_mean/seq_sum) so that data-parallel ranks, or gradient-accumulation micro batches, can
    all divide by the GLOBAL count and their summed gradients equal the full-batch gradient.
    With cfg.tis_cap and `behaviour_logprobs` (the sampler's logprobs, when `old_logprobs` were
    recomputed by the learner) the pg term is weighted by min(exp(old - behaviour), tis_cap).
    Gradients flow only into `logprobs`.
    """
    mask = loss_mask.to(torch.float32)
    on = mask > 0
    adv = advantages.detach().to(torch.float32)
    if adv.dim() == 1:
        adv = adv.unsqueeze(1)
    # Zero the log-ratio off-mask before exp(): padding could otherwise overflow into inf*0 = NaN.
    log_ratio = torch.where(on, logprobs.float() - old_logprobs.detach().float(), 0.0)
    ratio = torch.exp(log_ratio.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO))
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1 - cfg.clip_low, 1 + cfg.clip_high)
    is_clipped = (clipped > unclipped) & on  # pessimistic bound picks the clipped term: no gradient
    pg = torch.where(is_clipped, clipped, unclipped)
    metrics: dict[str, float] = {}
    if cfg.tis_cap is not None and behaviour_logprobs is not None:
        tis_log = torch.where(on, (old_logprobs - behaviour_logprobs).detach().float(), 0.0)
        weight = torch.exp(tis_log.clamp(max=MAX_LOG_RATIO)).clamp(max=cfg.tis_cap)
        pg = pg * weight
        metrics["tis_weight_mean"] = ((weight * mask).sum() / mask.sum().clamp(min=1)).item()
    pg = pg * mask
    per_token = pg
    kl = torch.zeros_like(pg)
    if ref_logprobs is not None:
        # Off-mask both sides are set to 0, so every estimator gives exactly 0 there.
        lp = torch.where(on, logprobs.float(), 0.0)
        ref = torch.where(on, ref_logprobs.detach().float(), 0.0)
        kl = kl_estimate(lp, ref, cfg.kl_estimator) * mask
        per_token = pg + cfg.kl_coef * kl
    elif cfg.kl_coef:
        raise ValueError("cfg.kl_coef > 0 needs ref_logprobs")
    loss = _aggregate(per_token, mask, cfg, normalizer)

    n = mask.sum().clamp(min=1)
    with torch.no_grad():
        metrics.update(
            loss=loss.item(),
            pg_loss=_aggregate(pg, mask, cfg, normalizer).item(),
            kl=(kl.sum() / n).item(),
            clip_frac=(is_clipped.float().sum() / n).item(),
            ratio_mean=((ratio * mask).sum() / n).item(),
            ratio_max=ratio[on].max().item() if on.any() else 0.0,
        )
    return loss, metrics
