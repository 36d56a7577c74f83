"""Group-relative (GRPO) advantages: each reward compared with the other responses to its prompt."""
from __future__ import annotations

import torch


def group_index(rewards: torch.Tensor, group_ids) -> tuple[torch.Tensor, int]:
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
    index, g = group_index(r, group_ids)
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


def role_group_ids(roles: list[str], group_ids) -> torch.Tensor:
    """Dense ids of the (role, group id) pairs, in order of first appearance: the responses of different
    roles to the same prompt are compared only within their role."""
    groups = torch.as_tensor(group_ids).tolist()
    if len(roles) != len(groups):
        raise ValueError(f"{len(roles)} roles for {len(groups)} group ids")
    index: dict[tuple[str, int], int] = {}
    return torch.tensor([index.setdefault((r, g), len(index)) for r, g in zip(roles, groups)], dtype=torch.long)


class EMABaseline:
    """Per-role exponential moving average of rewards (role-conditioned advantage estimation, SPIRAL).

    A role's baseline is read BEFORE the batch that updates it (so a reward is never compared with a
    baseline that already contains it): 0 until the role's first batch, that batch's mean reward after it,
    then b <- decay * b + (1 - decay) * (the batch's mean reward of the role).
    """

    def __init__(self, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA baseline decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.values: dict[str, float] = {}

    def value(self, role: str) -> float:
        return self.values.get(role, 0.0)

    def update(self, rewards, roles: list[str]) -> None:
        """Fold one batch into each present role's baseline."""
        rewards = torch.as_tensor(rewards, dtype=torch.float64).tolist()
        sums: dict[str, list[float]] = {}
        for r, role in zip(rewards, roles, strict=True):
            sums.setdefault(role, []).append(r)
        for role, rs in sums.items():
            mean = sum(rs) / len(rs)
            self.values[role] = mean if role not in self.values else self.decay * self.values[role] + (1 - self.decay) * mean

    def advantages(self, rewards, roles: list[str]) -> torch.Tensor:
        """reward - the role's baseline (from before this batch), then the baselines are updated."""
        rewards_t = torch.as_tensor(rewards)
        base = torch.tensor([self.value(role) for role in roles], dtype=torch.float64)
        adv = rewards_t.to(torch.float64) - base
        self.update(rewards_t, roles)
        return adv.to(rewards_t.dtype if rewards_t.is_floating_point() else torch.float32)

    def state_dict(self) -> dict:
        """Plain JSON-able state for checkpoints."""
        return {"decay": self.decay, "values": dict(self.values)}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.values = {str(k): float(v) for k, v in state["values"].items()}


def role_advantages(rewards, roles: list[str], group_ids, normalize_std: bool = True,
                    baseline: EMABaseline | None = None) -> torch.Tensor:
    """Group-relative advantages over (role, prompt) groups (see group_advantages).

    With a per-role `baseline`: groups of two or more are unchanged (a per-role constant cancels in the
    group mean), and a response alone in its group, which has no one to be compared with, gets
    reward - its role's baseline; the baseline then takes in this batch (EMABaseline.advantages).
    """
    rewards = torch.as_tensor(rewards)
    ids = role_group_ids(roles, group_ids)
    adv = group_advantages(rewards, ids, normalize_std=normalize_std)
    if baseline is None:
        return adv
    rae = baseline.advantages(rewards, roles)
    alone = torch.bincount(ids)[ids] == 1
    return torch.where(alone, rae.to(adv.dtype), adv)
