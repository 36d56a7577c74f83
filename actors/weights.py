"""Versioned weight transport: one flat byte buffer plus a small manifest.

A state dict travels as a single numpy uint8 array (one `ray.put`, zero-copy
reads on the same node) instead of hundreds of small tensors; the manifest
names each tensor's slice. A `WeightsMessage` carries the policy version so a
rollout worker can refuse stale or duplicate updates.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass
class WeightsMessage:
    version: int
    specs: list[TensorSpec]
    nbytes: int


def pack_state_dict(state: dict[str, torch.Tensor], version: int) -> tuple[WeightsMessage, np.ndarray]:
    specs, offset = [], 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        specs.append(TensorSpec(name, str(t.dtype).removeprefix("torch."), tuple(t.shape), offset, nbytes))
        offset += nbytes
    buf = np.empty(offset, dtype=np.uint8)
    flat = torch.from_numpy(buf)
    for spec, t in zip(specs, state.values()):
        flat[spec.offset:spec.offset + spec.nbytes].copy_(
            t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8))
    return WeightsMessage(version, specs, offset), buf


def unpack_state_dict(msg: WeightsMessage, buf: np.ndarray) -> dict[str, torch.Tensor]:
    """Views into `buf` (no copy); callers copy into their parameters."""
    if buf.nbytes != msg.nbytes:
        raise ValueError(f"weights buffer has {buf.nbytes} bytes, manifest says {msg.nbytes}")
    with warnings.catch_warnings():  # object-store buffers are read-only; we only read them
        warnings.simplefilter("ignore", UserWarning)
        flat = torch.from_numpy(buf)
    out = {}
    for s in msg.specs:
        out[s.name] = flat[s.offset:s.offset + s.nbytes].view(getattr(torch, s.dtype)).view(s.shape)
    return out


def is_tied_copy(model, key: str) -> bool:
    """lm_head.weight of a tied-embedding model is the embedding again: it is never sent twice."""
    return key == "lm_head.weight" and bool(getattr(model.config, "tie_word_embeddings", False))
