"""A broadcast group from learner rank 0 to the rollout engines, for weight sync.

The learner's own data-parallel group is DeepSpeed's default process group; this
one is separate: its own TCP store (hosted by learner rank 0) and its own
process group object, NCCL between GPUs, gloo on CPU. Members are learner rank 0
(group rank 0) and every rollout worker (ranks 1..N).

One sync is two broadcasts from rank 0: a header `[version, nbytes]`, then the
whole flat weight buffer (the same layout as `actors.weights.pack_state_dict`;
receivers got the manifest when they joined). A receiver checks the header
against the version it was told to expect and the manifest's size before it
takes the buffer, so a generation can never load a mixed or wrong-sized update.

The group has a fixed membership: when a rollout worker is replaced, the driver
builds a new group (new port) with every member.
"""
from __future__ import annotations

import datetime

import torch
import torch.distributed as dist


class SyncGroup:
    def __init__(self, host: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float = 300.0):
        timeout = datetime.timedelta(seconds=timeout_s)
        self.rank, self.world_size, self.backend = rank, world_size, backend
        self.store = dist.TCPStore(host, port, world_size, is_master=(rank == 0), timeout=timeout)
        if backend == "gloo":
            self.pg = dist.ProcessGroupGloo(self.store, rank, world_size, timeout)
        elif backend == "nccl":
            options = dist.ProcessGroupNCCL.Options()
            options._timeout = timeout
            self.pg = dist.ProcessGroupNCCL(self.store, rank, world_size, options)
        else:
            raise ValueError(f"sync group backend {backend!r}: use 'nccl' or 'gloo'")
        self.device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")

    def _broadcast(self, tensor: torch.Tensor) -> None:
        opts = dist.BroadcastOptions()
        opts.rootRank = 0
        self.pg.broadcast([tensor], opts).wait()
        if self.backend == "nccl":
            torch.cuda.current_stream().synchronize()

    def send(self, flat: torch.Tensor, version: int) -> None:
        """Rank 0: broadcast one version's flat uint8 buffer (already on this group's device)."""
        self._broadcast(torch.tensor([version, flat.numel()], dtype=torch.int64, device=self.device))
        self._broadcast(flat)

    def receive(self, expected_version: int, nbytes: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Ranks 1..N: take part in one sync; returns the flat buffer after checking its header."""
        header = torch.zeros(2, dtype=torch.int64, device=self.device)
        self._broadcast(header)
        version, size = (int(x) for x in header.tolist())
        flat = out if out is not None and out.numel() == size else torch.empty(size, dtype=torch.uint8,
                                                                                device=self.device)
        self._broadcast(flat)  # always take part, even to refuse: the other members would hang
        if version != expected_version:
            raise ValueError(f"weight broadcast carried version {version}, expected {expected_version}")
        if size != nbytes:
            raise ValueError(f"weight broadcast carried {size} bytes, the manifest says {nbytes}")
        return flat


def flat_buffer(state: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """Concatenate tensors' bytes, in order, into one uint8 tensor on `device` (the pack layout)."""
    parts = [t.detach().contiguous().reshape(-1).view(torch.uint8).to(device) for t in state.values()]
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.uint8, device=device)
