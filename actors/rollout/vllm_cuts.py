"""CUTS inside the vLLM engine: a V1 logits processor and the request settings that turn it on.

vLLM loads the processor by name (`VLLM_CUTS_FQCN`) when the engine starts; it acts only on
requests whose `SamplingParams.extra_args` ask for CUTS (`vllm_cuts_sampling_kwargs`), replacing
their logits by 0 on the truncation set (`trainers.cuts.truncation_mask`) and -inf elsewhere, so
the engine samples uniformly from the set. The processed logprob vLLM returns for such a token is
log 1/|set| up to float32 rounding (`snap_cuts_logprob`). Imports vllm: load only where it is installed.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor as VLLMLogitsProcessor
from vllm.v1.sample.logits_processor.interface import MoveDirectionality

from trainers.cuts import truncation_mask

VLLM_CUTS_FQCN = "actors.rollout.vllm_cuts:CUTSVLLMLogitsProcessor"
CUTS_EXTRA_ARG = "cuts"  # SamplingParams.extra_args key that turns CUTS on for a request


def parse_cuts_extra_args(extra_args: dict | None) -> tuple[float, int, float, float] | None:
    """(temperature, top_k, top_p, min_p) for a CUTS request, None for a standard one.

    extra_args = {"cuts": True, "cuts_temperature": T, "cuts_top_k": k, "cuts_top_p": p,
    "cuts_min_p": m}; missing truncation keys mean off, missing temperature means 1.0.
    """
    if not extra_args or not extra_args.get(CUTS_EXTRA_ARG):
        return None
    temperature = float(extra_args.get("cuts_temperature", 1.0))
    top_k = int(extra_args.get("cuts_top_k", 0) or 0)
    top_p = float(extra_args.get("cuts_top_p", 1.0))
    min_p = float(extra_args.get("cuts_min_p", 0.0) or 0.0)
    if temperature <= 0:
        raise ValueError("CUTS needs cuts_temperature > 0")
    if top_k < -1:
        raise ValueError(f"cuts_top_k must be -1/0 (off) or >= 1, got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"cuts_top_p must be in (0, 1], got {top_p}")
    if not 0.0 <= min_p <= 1.0:
        raise ValueError(f"cuts_min_p must be in [0, 1], got {min_p}")
    return temperature, max(top_k, 0), top_p, min_p


def vllm_cuts_sampling_kwargs(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                              min_p: float = 0.0) -> dict[str, Any]:
    """SamplingParams kwargs for a CUTS request (add n, max_tokens, seed, stop, logprobs=0...).

    vLLM applies penalties, temperature, min-p, top-k and top-p AFTER a non-argmax-invariant
    logits processor such as CUTS, so all of them are neutral here and the configured truncation
    travels in extra_args. temperature=1.0 keeps the request on the random-sampling path (the
    0/-inf scores are unchanged by it).
    """
    return dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, presence_penalty=0.0,
                frequency_penalty=0.0, repetition_penalty=1.0,
                extra_args={CUTS_EXTRA_ARG: True, "cuts_temperature": float(temperature),
                            "cuts_top_k": int(top_k or 0), "cuts_top_p": float(top_p),
                            "cuts_min_p": float(min_p or 0.0)})


def snap_cuts_logprob(logprob):
    """Exact -log(|set|) from a float32-rounded one (vLLM processed_logprobs of a CUTS token)."""
    if isinstance(logprob, torch.Tensor):
        n = torch.round(torch.exp(-logprob.double())).clamp(min=1)
        return -torch.log(n).to(logprob.dtype)
    return -math.log(max(1, round(math.exp(-logprob))))


class CUTSVLLMLogitsProcessor(VLLMLogitsProcessor):
    """Batch-level vLLM V1 processor: CUTS rows -> 0 on the set, -inf elsewhere.

    Acts only on requests whose SamplingParams.extra_args has {"cuts": True}; other rows are
    untouched. Not argmax-invariant, so vLLM applies it before penalties and temperature, on
    the raw float32 logits, also for greedy requests (CUTS requests must not be greedy).
    """

    @classmethod
    def validate_params(cls, sampling_params):
        args = parse_cuts_extra_args(getattr(sampling_params, "extra_args", None))
        if args is None:
            return
        sp = sampling_params
        bad = []
        if sp.temperature != 1.0:
            bad.append(f"temperature={sp.temperature} (must be 1.0; put it in cuts_temperature)")
        if sp.top_k not in (0, -1, None):
            bad.append(f"top_k={sp.top_k}")
        if sp.top_p != 1.0:
            bad.append(f"top_p={sp.top_p}")
        if sp.min_p:
            bad.append(f"min_p={sp.min_p}")
        if sp.presence_penalty or sp.frequency_penalty or sp.repetition_penalty != 1.0:
            bad.append("penalties")
        if bad:
            raise ValueError("CUTS request: vLLM's own sampling settings must be neutral "
                             f"(use vllm_cuts_sampling_kwargs): {', '.join(bad)}")

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.device = torch.device(device)
        self.requests: dict[int, tuple[float, int, float, float]] = {}
        self._rows = self._temp = self._k = self._p = self._m = None

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if not batch_update:
            return
        reqs, changed = self.requests, False
        for index, params, _, _ in batch_update.added:
            args = parse_cuts_extra_args(getattr(params, "extra_args", None)) if params else None
            if args is not None:
                reqs[index] = args
                changed = True
            elif reqs.pop(index, None) is not None:
                changed = True
        for index in batch_update.removed:
            changed |= reqs.pop(index, None) is not None
        for a, b, direction in batch_update.moved:
            a_args, b_args = reqs.pop(a, None), reqs.pop(b, None)
            if a_args is not None:
                reqs[b] = a_args
            if direction == MoveDirectionality.SWAP and b_args is not None:
                reqs[a] = b_args
            changed |= a_args is not None or b_args is not None
        if changed:
            self._rebuild()

    def _rebuild(self) -> None:
        if not self.requests:
            self._rows = None
            return
        rows = sorted(self.requests)
        vals = [self.requests[r] for r in rows]
        dev = self.device
        self._rows = torch.tensor(rows, dtype=torch.long, device=dev)
        # one shared config (the usual case): scalars, which lets truncation_mask skip the sort
        # when there is no top-p
        self._shared = vals[0] if len(set(vals)) == 1 else None
        self._temp = torch.tensor([v[0] for v in vals], dtype=torch.float32, device=dev)
        self._k = torch.tensor([v[1] for v in vals], dtype=torch.long, device=dev)
        self._p = torch.tensor([v[2] for v in vals], dtype=torch.float32, device=dev)
        self._m = torch.tensor([v[3] for v in vals], dtype=torch.float32, device=dev)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if self._rows is None:
            return logits
        sub = logits.index_select(0, self._rows)
        if self._shared is not None:
            mask = truncation_mask(sub, *self._shared)
        else:
            mask = truncation_mask(sub, self._temp, self._k, self._p, self._m)
        uniform = torch.zeros_like(sub).masked_fill_(~mask, -math.inf)
        logits.index_copy_(0, self._rows, uniform)
        return logits
