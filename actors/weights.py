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
    # "full": every weight, in the base model's names; "lora": only a PEFT adapter's tensors, with
    # its adapter_config.json contents in `adapter_config` (engines that serve LoRA load it as an adapter)
    kind: str = "full"
    adapter_config: dict | None = None


def manifest(state: dict[str, torch.Tensor], version: int, kind: str = "full",
             adapter_config: dict | None = None) -> WeightsMessage:
    """The message describing `state` packed in order (no bytes copied)."""
    specs, offset = [], 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        specs.append(TensorSpec(name, str(t.dtype).removeprefix("torch."), tuple(t.shape), offset, nbytes))
        offset += nbytes
    return WeightsMessage(version, specs, offset, kind, adapter_config)


def pack_state_dict(state: dict[str, torch.Tensor], version: int, kind: str = "full",
                    adapter_config: dict | None = None) -> tuple[WeightsMessage, np.ndarray]:
    msg = manifest(state, version, kind, adapter_config)
    buf = np.empty(msg.nbytes, dtype=np.uint8)
    flat = torch.from_numpy(buf)
    for spec, t in zip(msg.specs, state.values()):
        flat[spec.offset:spec.offset + spec.nbytes].copy_(
            t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8))
    return msg, buf


def unpack_state_dict(msg: WeightsMessage, buf: np.ndarray) -> dict[str, torch.Tensor]:
    """Views into `buf` (no copy); callers copy into their parameters."""
    if buf.nbytes != msg.nbytes:
        raise ValueError(f"weights buffer has {buf.nbytes} bytes, manifest says {msg.nbytes}")
    with warnings.catch_warnings():  # object-store buffers are read-only; we only read them
        warnings.simplefilter("ignore", UserWarning)
        flat = torch.from_numpy(buf)
    return unpack_flat(msg, flat)


def unpack_flat(msg: WeightsMessage, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views into a flat uint8 tensor on any device (no copy)."""
    if flat.numel() != msg.nbytes:
        raise ValueError(f"weights buffer has {flat.numel()} bytes, manifest says {msg.nbytes}")
    out = {}
    for s in msg.specs:
        out[s.name] = flat[s.offset:s.offset + s.nbytes].view(getattr(torch, s.dtype)).view(s.shape)
    return out


def is_tied_copy(model, key: str) -> bool:
    """lm_head.weight of a tied-embedding model is the embedding again: it is never sent twice."""
    return key == "lm_head.weight" and bool(getattr(model.config, "tie_word_embeddings", False))
