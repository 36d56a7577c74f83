"""Trajectories from the samplers and the padded tensor batch the learner trains on."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields

import torch


@dataclass
class Trajectory:
    """One sampled response to one prompt."""

    prompt_ids: list[int]
    response_ids: list[int]
    behaviour_logprobs: list[float]  # per response token, under the sampling policy
    reward: float = 0.0
    group_id: int = 0  # responses to the same prompt share a group id
    role: str = "solver"
    episode: str = "grpo"
    policy_version: int = 0
    loss_mask: list[int] | None = None  # per response token; 0 = tool output; None = all 1
    metadata: dict = field(default_factory=dict)
    advantage: float = 0.0

    def to_dict(self) -> dict:
        """Plain dict of lists/numbers/strings, ready for json.dumps."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Trajectory:
        # Copy so that the trajectory never aliases the caller's lists.
        return cls(**{f.name: copy.deepcopy(d[f.name]) for f in fields(cls) if f.name in d})


@dataclass
class Batch:
    """Right-padded tensors; column t of loss_mask/old_logprobs scores input_ids[:, t + 1]."""

    input_ids: torch.Tensor  # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long
    loss_mask: torch.Tensor  # [B, T-1] float
    old_logprobs: torch.Tensor  # [B, T-1] float
    advantages: torch.Tensor  # [B] float

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def _rows(self, start: int, stop: int) -> Batch:
        return Batch(*(getattr(self, f.name)[start:stop] for f in fields(self)))

    def shard(self, rank: int, world_size: int) -> Batch:
        """Contiguous rows for `rank`; the first len % world_size ranks get one extra row."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        base, extra = divmod(len(self), world_size)
        start = rank * base + min(rank, extra)
        return self._rows(start, start + base + (rank < extra))

    def to(self, device) -> Batch:
        return Batch(*(getattr(self, f.name).to(device) for f in fields(self)))

    def micro_batches(self, size: int) -> list[Batch]:
        """Consecutive chunks of `size` rows (the last may be smaller)."""
        if size < 1:
            raise ValueError("micro batch size must be >= 1")
        return [self._rows(i, i + size) for i in range(0, len(self), size)]


def collate(trajectories: list[Trajectory], pad_id: int) -> Batch:
    """Pad prompt+response rows to the longest and place per-token data at target positions."""
    if not trajectories:
        raise ValueError("cannot collate an empty list of trajectories")
    T = max(len(t.prompt_ids) + len(t.response_ids) for t in trajectories)
    B = len(trajectories)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(B, T, dtype=torch.long)
    loss_mask = torch.zeros(B, max(T - 1, 0))
    old_logprobs = torch.zeros(B, max(T - 1, 0))
    for i, t in enumerate(trajectories):
        P, R = len(t.prompt_ids), len(t.response_ids)
        if P == 0:
            # The first response token needs a preceding position to be predicted from.
            raise ValueError("trajectory has an empty prompt")
        if len(t.behaviour_logprobs) != R or (t.loss_mask is not None and len(t.loss_mask) != R):
            raise ValueError("behaviour_logprobs/loss_mask length differs from response_ids")
        input_ids[i, : P + R] = torch.tensor(t.prompt_ids + t.response_ids, dtype=torch.long)
        attention_mask[i, : P + R] = 1
        # Response token j sits at input position P + j, so it is predicted at position P - 1 + j.
        mask = t.loss_mask if t.loss_mask is not None else [1] * R
        loss_mask[i, P - 1 : P - 1 + R] = torch.tensor(mask, dtype=torch.float)
        old_logprobs[i, P - 1 : P - 1 + R] = torch.tensor(t.behaviour_logprobs, dtype=torch.float)
    advantages = torch.tensor([t.advantage for t in trajectories], dtype=torch.float)
    return Batch(input_ids, attention_mask, loss_mask, old_logprobs, advantages)
