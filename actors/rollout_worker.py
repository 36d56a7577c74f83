"""RolloutWorker: a Ray actor that owns one generation engine.

Weights arrive as versioned messages, through the object store
(`update_weights`) or a broadcast group from learner rank 0 (`receive_weights`);
the actor runs one method at a time, so a `generate` call always sees exactly
one version, and it reports that version with its samples. Stale or repeated
versions are refused. A message is either the full weights or, for LoRA runs on
an engine that serves adapters, only the adapter.
"""
from __future__ import annotations

import os
import time

import ray
import torch

from actors.threads import auto_threads
from actors.weights import WeightsMessage, unpack_flat, unpack_state_dict


class StaleWeightsError(RuntimeError):
    pass


def make_backend(name: str, model_path: str, dtype: str, device: str, lora_rank: int = 0, sleep_mode: bool = False,
                 max_model_len: int = 2048, cpu_kv_cache_gib: float = 1.0):
    """lora_rank > 0: the engine serves LoRA adapters (vLLM only); sleep_mode: it can free the GPU (vLLM only)."""
    if name == "hf":
        from actors.rollout.hf_backend import HFBackend

        return HFBackend(model_path, dtype, device)
    if name == "vllm":
        from actors.rollout.vllm_backend import VLLMBackend

        return VLLMBackend(model_path, dtype, device, max_model_len=max_model_len, lora_rank=lora_rank,
                           sleep_mode=sleep_mode, cpu_kv_cache_gib=cpu_kv_cache_gib)
    raise ValueError(f"rollout.backend={name!r}: available backends are 'hf', 'vllm'")


class RolloutHost:
    """One generation engine and its weight versions: the body of a RolloutWorker actor, or the rollout half of
    a HybridWorker (actors/hybrid_worker.py), which hosts it inside a learner rank's process."""

    def __init__(self, index: int, model_path: str, backend: str = "hf", dtype: str = "float32", threads: int = 0,
                 lora_rank: int = 0, sleep_mode: bool = False, max_model_len: int = 2048, share: int = 1,
                 cpu_kv_cache_gib: float = 1.0):
        """threads: torch threads; 0 = this node's cores split among `share` processes computing at once."""
        torch.set_num_threads(auto_threads(threads, share))
        device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
        self.index = index
        self.sampler = make_backend(backend, model_path, dtype, device, lora_rank, sleep_mode, max_model_len,
                                    cpu_kv_cache_gib)
        self.version = 0
        self.receive_group, self.sync_manifest, self._sync_buffer = None, None, None

    def ready(self) -> dict:
        return {"index": self.index, "pid": os.getpid(), "version": self.version}

    def update_weights(self, payload: tuple[WeightsMessage, object]) -> dict:
        """Load (manifest, flat buffer) from learner rank 0; refuses versions not newer than ours."""
        msg, buf = payload
        self._check_newer(msg.version)
        start = time.perf_counter()
        self._load(msg, unpack_state_dict(msg, buf), msg.version)
        return {"version": self.version, "seconds": time.perf_counter() - start, "bytes": msg.nbytes}

    def join_sync_group(self, host: str, port: int, rank: int, world_size: int, backend: str,
                        manifest: WeightsMessage) -> None:
        """Join learner rank 0's broadcast group as `rank` (a new group replaces an old one)."""
        from actors.sync_group import SyncGroup

        self.receive_group = None
        self.receive_group = SyncGroup(host, port, rank, world_size, backend)
        self.sync_manifest, self._sync_buffer = manifest, None

    def receive_weights(self, version: int) -> dict:
        """Take part in one broadcast from learner rank 0 and load it, if it is the expected newer version."""
        if self.receive_group is None:
            raise RuntimeError(f"worker {self.index} has not joined a weight sync group")
        start = time.perf_counter()
        msg = self.sync_manifest
        flat = self.receive_group.receive(version, msg.nbytes, self._sync_buffer)
        self._sync_buffer = flat  # reused by the next sync
        self._check_newer(version)
        self._load(msg, unpack_flat(msg, flat), version)
        return {"version": self.version, "seconds": time.perf_counter() - start, "bytes": msg.nbytes}

    def _check_newer(self, version: int) -> None:
        if version <= self.version:
            raise StaleWeightsError(f"worker {self.index} holds version {self.version}; refusing version {version}")

    def _load(self, msg: WeightsMessage, state: dict, version: int) -> None:
        if msg.kind == "lora":
            if not hasattr(self.sampler, "load_adapter"):
                raise ValueError(f"worker {self.index}: this backend cannot serve LoRA adapters; send full weights")
            self.sampler.load_adapter(state, msg.adapter_config, version)
        else:
            self.sampler.load_weights(state)
        self.version = version

    def sleep(self) -> None:
        self.sampler.sleep()

    def wake_up(self) -> None:
        self.sampler.wake_up()

    def generate(self, prompts: list[list[int]], sampling, seed: int) -> dict:
        start = time.perf_counter()
        samples = self.sampler.generate(prompts, sampling, seed)
        tokens = sum(len(s.response_ids) for group in samples for s in group)
        return {"version": self.version, "samples": samples, "tokens": tokens,
                "seconds": time.perf_counter() - start}

    def weights_fingerprint(self) -> float:
        """Sum of all parameters: a cheap check that two copies hold the same weights."""
        return float(sum(p.double().sum() for p in self.sampler.named_parameters().values()))


@ray.remote
class RolloutWorker(RolloutHost):
    """A generation engine in a process of its own (rollout.placement=workers)."""
