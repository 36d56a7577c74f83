"""Direct preference optimisation losses on per-sequence log-probabilities (plain torch, no model).

For a pair (chosen c, rejected r) with policy log-probs pi_c, pi_r and frozen-reference log-probs ref_c, ref_r:

    h = (pi_c - ref_c) - (pi_r - ref_r)
    sigmoid (DPO, Rafailov et al. 2023), conservative with label smoothing ls:
        loss = -(1 - ls) * logsigmoid(beta * h) - ls * logsigmoid(-beta * h)
    ipo (Azar et al. 2023, eq. 17):
        loss = (h - 1 / (2 * beta)) ** 2

The log-probs are what the caller makes them: summed over the response tokens for sigmoid, averaged over
them for ipo (as TRL does). The implicit rewards are beta * (pi - ref).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "ipo")


@dataclass
class PreferenceConfig:
    beta: float = 0.1
    loss_type: str = "sigmoid"  # sigmoid | ipo
    label_smoothing: float = 0.0  # sigmoid only: the probability that a pair's label is flipped


def check_loss_type(loss_type: str) -> None:
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}: use {' or '.join(LOSS_TYPES)}")


def dpo_losses(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
               ref_rejected_logps: torch.Tensor, beta: float = 0.1, loss_type: str = "sigmoid",
               label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pair losses [N] (for a normaliser that divides by a global pair count) and per-pair detached
    statistics [N]: h (the log-ratio margin), chosen_reward, rejected_reward."""
    check_loss_type(loss_type)
    if beta <= 0:
        raise ValueError(f"DPO beta must be > 0, got {beta}")
    chosen_ratio = chosen_logps - ref_chosen_logps.detach()
    rejected_ratio = rejected_logps - ref_rejected_logps.detach()
    h = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    else:  # ipo
        losses = (h - 1 / (2 * beta)) ** 2
    stats = {"h": h.detach(), "chosen_reward": beta * chosen_ratio.detach(),
             "rejected_reward": beta * rejected_ratio.detach()}
    return losses, stats


def preference_metrics(losses: torch.Tensor, stats: dict[str, torch.Tensor], beta: float,
                       weights: torch.Tensor | None = None) -> dict[str, float]:
    """Means over the pairs (those with weight 1 when `weights` is given): loss, margin (beta * h),
    accuracy (fraction with h > 0), chosen_reward, rejected_reward."""
    w = torch.ones_like(losses) if weights is None else weights.to(losses.dtype)
    n = float(w.sum())
    if n == 0:
        return {}

    def mean(x: torch.Tensor) -> float:
        return float((x.detach().to(w.dtype) * w).sum()) / n

    return {"loss": mean(losses), "margin": mean(beta * stats["h"]), "accuracy": mean((stats["h"] > 0).float()),
            "chosen_reward": mean(stats["chosen_reward"]), "rejected_reward": mean(stats["rejected_reward"])}


def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, beta: float = 0.1, loss_type: str = "sigmoid",
             label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """The batch-mean DPO loss over N pairs ([N] per-sequence log-probs) and its metrics:
    loss, margin, accuracy, chosen_reward, rejected_reward."""
    losses, stats = dpo_losses(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps,
                               beta, loss_type, label_smoothing)
    return losses.mean(), preference_metrics(losses, stats, beta)
