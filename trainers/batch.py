"""Trajectories from the samplers and the padded tensor batch the learner trains on.

Units: a batch is made of units of `Batch.unit` consecutive rows (1 row for grpo/sft, 2 rows for a DPO
pair, chosen then rejected). `shard`, `split` and `micro_batches` cut only between units, so a pair is never
split across ranks or micro batches.

Padding rows: a rank that has fewer units than another still runs the same number of micro steps (ZeRO
reduces gradients at every backward); its extra micro batches hold a copy of a real unit whose loss mask,
advantages and `valid` flag are 0, so its loss and gradient are exactly 0 (`Batch.padding`).

Behaviour logprobs: grpo needs the sampler's logprob of every response token (pi_old, or the truncated-IS
weight). dpo and sft do not use them; for those `collate(..., require_behaviour=False)` also accepts an
empty `behaviour_logprobs` list, meaning "unknown", and fills zeros. A non-empty list must always have one
entry per response token.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields

import torch


@dataclass
class Trajectory:
    """One sampled (or given) response to one prompt."""

    prompt_ids: list[int]
    response_ids: list[int]
    behaviour_logprobs: list[float]  # per response token, under the sampling policy ([] = unknown: dpo/sft only)
    reward: float = 0.0
    group_id: int = 0  # responses to the same prompt share a group id
    role: str = "solver"
    episode: str = "grpo"
    policy_version: int = 0
    loss_mask: list[int] | None = None  # per response token; 0 = tool output / observation; None = all 1
    metadata: dict = field(default_factory=dict)
    advantage: float = 0.0
    # per response token (e.g. process rewards); when set the grpo loss uses them instead of `advantage`
    token_advantages: list[float] | None = None
    pair_id: int | None = None  # DPO: the two responses of a preference pair share a pair id
    chosen: bool | None = None  # DPO: True for the preferred response of its pair, False for the other

    def has_signal(self) -> bool:
        """Whether the grpo loss gets a gradient from this sample: a nonzero advantage (the per-token ones when
        set, since the loss then uses them instead of ``advantage``)."""
        if self.token_advantages is not None:
            return any(a != 0 for a in self.token_advantages)
        return self.advantage != 0

    def to_dict(self) -> dict:
        """Plain dict of lists/numbers/strings, ready for json.dumps."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Trajectory:
        # Copy so that the trajectory never aliases the caller's lists.
        return cls(**{f.name: copy.deepcopy(d[f.name]) for f in fields(cls) if f.name in d})


# the per-row tensor fields of a Batch, in order (None-valued optional ones are skipped when slicing)
_ROW_FIELDS = ("input_ids", "attention_mask", "loss_mask", "old_logprobs", "advantages", "token_advantages", "valid")


@dataclass
class Batch:
    """Right-padded tensors; column t of loss_mask/old_logprobs/token_advantages scores input_ids[:, t + 1]."""

    input_ids: torch.Tensor  # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long
    loss_mask: torch.Tensor  # [B, T-1] float
    old_logprobs: torch.Tensor  # [B, T-1] float
    advantages: torch.Tensor  # [B] float
    token_advantages: torch.Tensor | None = None  # [B, T-1] float; None = every row uses its scalar advantage
    valid: torch.Tensor | None = None  # [B] float: 1 = a real row, 0 = a padding row; None = all real
    unit: int = 1  # rows per unit: 1, or 2 for a DPO pair (chosen row, then rejected row)

    def __post_init__(self):
        if self.unit < 1 or len(self) % self.unit:
            raise ValueError(f"a batch of {len(self)} rows cannot be made of units of {self.unit} rows")

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def units(self) -> int:
        return len(self) // self.unit

    def valid_rows(self) -> torch.Tensor:
        """[B] float, 1 for a real row and 0 for a padding row."""
        if self.valid is None:
            return torch.ones(len(self), device=self.input_ids.device)
        return self.valid

    def _map(self, fn) -> Batch:
        return Batch(**{name: (None if getattr(self, name) is None else fn(getattr(self, name))) for name in _ROW_FIELDS},
                     unit=self.unit)

    def _rows(self, start: int, stop: int) -> Batch:
        return self._map(lambda x: x[start:stop])

    def _units(self, start: int, stop: int) -> Batch:
        return self._rows(start * self.unit, stop * self.unit)

    def split(self, parts: int) -> list[Batch]:
        """`parts` contiguous pieces of whole units, the first units % parts one unit larger (some may be empty)."""
        if parts < 1:
            raise ValueError("parts must be >= 1")
        base, extra = divmod(self.units, parts)
        out, start = [], 0
        for p in range(parts):
            stop = start + base + (p < extra)
            out.append(self._units(start, stop))
            start = stop
        return out

    def shard(self, rank: int, world_size: int) -> Batch:
        """Contiguous units for `rank`; the first units % world_size ranks get one extra unit."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        return self.split(world_size)[rank]

    def by_length(self) -> Batch:
        """The same units, longest first (a unit's length: its longest row); ties keep their order."""
        lengths = self.attention_mask.sum(1).view(self.units, self.unit).max(1).values
        order = sorted(range(self.units), key=lambda u: -int(lengths[u]))
        rows = torch.tensor([u * self.unit + r for u in order for r in range(self.unit)], dtype=torch.long)
        return self._map(lambda x: x[rows])

    def trimmed(self) -> Batch:
        """The same rows without the trailing columns that are padding in every row (a micro batch of short
        rows cut from a batch padded to its longest)."""
        T = int(self.attention_mask.sum(1).max()) if len(self) else 0
        if T <= 0 or T >= self.input_ids.shape[1]:
            return self
        cols = {"input_ids": T, "attention_mask": T, "loss_mask": T - 1, "old_logprobs": T - 1, "token_advantages": T - 1}
        return Batch(**{name: (None if getattr(self, name) is None else
                               getattr(self, name)[:, :cols[name]] if name in cols else getattr(self, name))
                        for name in _ROW_FIELDS}, unit=self.unit)

    def to(self, device) -> Batch:
        return self._map(lambda x: x.to(device))

    def micro_batches(self, size: int) -> list[Batch]:
        """Consecutive chunks of at most `size` rows (the last may be smaller); a chunk always holds at
        least one whole unit, so with pairs and size 1 each chunk is one pair (2 rows)."""
        if size < 1:
            raise ValueError("micro batch size must be >= 1")
        per = max(size // self.unit, 1)
        return [self._units(i, i + per) for i in range(0, self.units, per)]

    def padding(self, units: int = 1) -> Batch:
        """`units` copies of this batch's first unit that contribute nothing: loss mask, advantages and
        valid are 0, so any objective's loss on them, and its gradient, is exactly 0."""
        if self.units == 0:
            raise ValueError("cannot pad from an empty batch")
        idx = torch.arange(self.unit).repeat(units)
        rows = self._map(lambda x: x[idx].clone())
        rows.loss_mask.zero_()
        rows.advantages.zero_()
        if rows.token_advantages is not None:
            rows.token_advantages.zero_()
        rows.valid = torch.zeros(len(rows), device=self.input_ids.device)
        return rows


def collate(trajectories: list[Trajectory], pad_id: int, require_behaviour: bool = True, unit: int = 1) -> Batch:
    """Pad prompt+response rows to the longest and place per-token data at target positions.

    require_behaviour=False (objectives that do not use the sampler's logprobs: dpo, sft): an empty
    behaviour_logprobs list means unknown and is stored as zeros.
    """
    if not trajectories:
        raise ValueError("cannot collate an empty list of trajectories")
    T = max(len(t.prompt_ids) + len(t.response_ids) for t in trajectories)
    B = len(trajectories)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(B, T, dtype=torch.long)
    loss_mask = torch.zeros(B, max(T - 1, 0))
    old_logprobs = torch.zeros(B, max(T - 1, 0))
    token_adv = torch.zeros(B, max(T - 1, 0)) if any(t.token_advantages is not None for t in trajectories) else None
    for i, t in enumerate(trajectories):
        P, R = len(t.prompt_ids), len(t.response_ids)
        if P == 0:
            # The first response token needs a preceding position to be predicted from.
            raise ValueError("trajectory has an empty prompt")
        behaviour = t.behaviour_logprobs
        if not require_behaviour and not behaviour:
            behaviour = [0.0] * R  # unknown, and unused by this objective
        if len(behaviour) != R or (t.loss_mask is not None and len(t.loss_mask) != R):
            raise ValueError(f"trajectory {i}: behaviour_logprobs ({len(t.behaviour_logprobs)}) or loss_mask "
                             f"({None if t.loss_mask is None else len(t.loss_mask)}) length differs from "
                             f"response_ids ({R})")
        if t.token_advantages is not None and len(t.token_advantages) != R:
            raise ValueError(f"trajectory {i}: {len(t.token_advantages)} token_advantages for {R} response tokens")
        input_ids[i, : P + R] = torch.tensor(t.prompt_ids + t.response_ids, dtype=torch.long)
        attention_mask[i, : P + R] = 1
        # Response token j sits at input position P + j, so it is predicted at position P - 1 + j.
        mask = t.loss_mask if t.loss_mask is not None else [1] * R
        loss_mask[i, P - 1 : P - 1 + R] = torch.tensor(mask, dtype=torch.float)
        old_logprobs[i, P - 1 : P - 1 + R] = torch.tensor(behaviour, dtype=torch.float)
        if token_adv is not None:
            values = t.token_advantages if t.token_advantages is not None else [t.advantage] * R
            token_adv[i, P - 1 : P - 1 + R] = torch.tensor(values, dtype=torch.float)
    advantages = torch.tensor([t.advantage for t in trajectories], dtype=torch.float)
    return Batch(input_ids, attention_mask, loss_mask, old_logprobs, advantages, token_adv, unit=unit)


def order_pairs(trajectories: list[Trajectory]) -> list[Trajectory]:
    """DPO pairs as consecutive (chosen, rejected) trajectories, pairs in order of first appearance.
    Every pair_id must have exactly one chosen and one rejected trajectory."""
    pairs: dict[int, list[Trajectory]] = {}
    for i, t in enumerate(trajectories):
        if t.pair_id is None or t.chosen is None:
            raise ValueError(f"trajectory {i} has pair_id={t.pair_id!r}, chosen={t.chosen!r}: every DPO "
                             "trajectory needs a pair_id and chosen=True/False")
        pairs.setdefault(t.pair_id, []).append(t)
    out = []
    for pid, members in pairs.items():
        chosen = [t for t in members if t.chosen]
        rejected = [t for t in members if not t.chosen]
        if len(chosen) != 1 or len(rejected) != 1:
            raise ValueError(f"DPO pair {pid} has {len(chosen)} chosen and {len(rejected)} rejected trajectories: "
                             "a pair needs exactly one of each")
        out += [chosen[0], rejected[0]]
    return out


def collate_pairs(trajectories: list[Trajectory], pad_id: int) -> Batch:
    """DPO batch: rows chosen, rejected for each pair (see order_pairs); unit = 2 rows."""
    return collate(order_pairs(trajectories), pad_id, require_behaviour=False, unit=2)

