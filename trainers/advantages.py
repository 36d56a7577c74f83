"""Group-relative (GRPO) advantages: each reward compared with the other responses to its prompt."""
from __future__ import annotations

import torch


def _group_index(rewards: torch.Tensor, group_ids) -> tuple[torch.Tensor, int]:
    """Map arbitrary group ids (or a fixed group size) to dense indices 0..G-1."""
    n = rewards.shape[0]
    if isinstance(group_ids, int):
        if group_ids < 1 or n % group_ids:
            raise ValueError(f"{n} rewards cannot be split into groups of {group_ids}")
        return torch.arange(n, device=rewards.device) // group_ids, n // group_ids
    ids = torch.as_tensor(group_ids, device=rewards.device)
    if ids.shape != rewards.shape:
        raise ValueError("group_ids and rewards must have the same shape")
    uniq, index = torch.unique(ids, return_inverse=True)
    return index, uniq.numel()


def _group_stats(rewards: torch.Tensor, group_ids):
    """Per-element group mean, unbiased std, size and whether the group's rewards are all equal."""
    r = rewards.detach().to(torch.float64)  # float64 so that equal rewards centre to exactly 0
    index, g = _group_index(r, group_ids)
    count = torch.zeros(g, dtype=r.dtype, device=r.device).index_add_(0, index, torch.ones_like(r))
    mean = torch.zeros_like(count).index_add_(0, index, r) / count
    sq = torch.zeros_like(count).index_add_(0, index, (r - mean[index]) ** 2)
    std = (sq / (count - 1).clamp(min=1)).sqrt()
    hi = torch.full_like(count, -torch.inf).scatter_reduce(0, index, r, "amax")
    lo = torch.full_like(count, torch.inf).scatter_reduce(0, index, r, "amin")
    return r, index, mean, std, count, hi == lo


def group_advantages(rewards: torch.Tensor, group_ids, normalize_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO advantage: (reward - group mean) / (group std + eps), or only mean-centred (Dr.GRPO).

    `group_ids` is a tensor of arbitrary ints (same shape as rewards) or an int group size for
    contiguous groups. The std is the unbiased one (torch.std default), as in TRL's GRPOTrainer.
    Groups of size 1 and groups whose rewards are all equal get exactly 0.
    """
    rewards = torch.as_tensor(rewards)
    r, index, mean, std, count, flat = _group_stats(rewards, group_ids)
    adv = r - mean[index]
    if normalize_std:
        adv = adv / (std[index] + eps)
    # A lone or uniform group carries no learning signal; force 0 rather than rounding noise.
    adv = torch.where((count[index] < 2) | flat[index], torch.zeros_like(adv), adv)
    return adv.to(rewards.dtype if rewards.is_floating_point() else torch.float32)


def zero_advantage_fraction(rewards: torch.Tensor, group_ids) -> float:
    """Fraction of groups whose rewards are all equal (groups of one count), i.e. that give no gradient."""
    *_, flat = _group_stats(torch.as_tensor(rewards), group_ids)
    return flat.float().mean().item() if flat.numel() else 0.0
