"""RolloutWorker: a Ray actor that owns one generation engine.

Weights arrive as versioned messages; the actor runs one method at a time, so
a `generate` call always sees exactly one version, and it reports that version
with its samples. Stale or repeated versions are refused.
"""
from __future__ import annotations

import os
import time

import ray
import torch

from actors.weights import WeightsMessage, unpack_state_dict


class StaleWeightsError(RuntimeError):
    pass


def make_backend(name: str, model_path: str, dtype: str, device: str):
    if name == "hf":
        from actors.rollout.hf_backend import HFBackend

        return HFBackend(model_path, dtype, device)
    if name == "vllm":
        from actors.rollout.vllm_backend import VLLMBackend

        return VLLMBackend(model_path, dtype, device)
    raise ValueError(f"rollout.backend={name!r}: available backends are 'hf', 'vllm'")


@ray.remote
class RolloutWorker:
    def __init__(self, index: int, model_path: str, backend: str = "hf", dtype: str = "float32", threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
        self.index = index
        self.engine = make_backend(backend, model_path, dtype, device)
        self.version = 0

    def ready(self) -> dict:
        return {"index": self.index, "pid": os.getpid(), "version": self.version}

    def update_weights(self, payload: tuple[WeightsMessage, object]) -> dict:
        """Load (manifest, flat buffer) from learner rank 0; refuses versions not newer than ours."""
        msg, buf = payload
        if msg.version <= self.version:
            raise StaleWeightsError(f"worker {self.index} holds version {self.version}; refusing version {msg.version}")
        start = time.perf_counter()
        self.engine.load_weights(unpack_state_dict(msg, buf))
        self.version = msg.version
        return {"version": self.version, "seconds": time.perf_counter() - start, "bytes": msg.nbytes}

    def generate(self, prompts: list[list[int]], sampling, seed: int) -> dict:
        start = time.perf_counter()
        samples = self.engine.generate(prompts, sampling, seed)
        tokens = sum(len(s.response_ids) for group in samples for s in group)
        return {"version": self.version, "samples": samples, "tokens": tokens,
                "seconds": time.perf_counter() - start}

    def weights_fingerprint(self) -> float:
        """Sum of all parameters: a cheap check that two copies hold the same weights."""
        return float(sum(p.double().sum() for p in self.engine.named_parameters().values()))
