"""LearnerWorker: one rank of a DeepSpeed ZeRO data-parallel group, as a Ray actor.

gloo on CPU, NCCL on GPU. Torch's AdamW is the default client optimizer so
nothing is compiled at run time. Optional LoRA (PEFT) and a frozen reference
model (the KL term, DPO). Trains with any objective of trainers/objectives.py,
by name. Rank 0 serves the weights for rollout sync.
"""
from __future__ import annotations

import os
import time
import warnings

import ray
import torch

from actors.threads import auto_threads
from actors.weights import is_tied_copy, manifest, pack_state_dict
from trainers.ds_config import deepspeed_config


class LearnerRank:
    """One rank's model, DeepSpeed engine and objectives: the body of a LearnerWorker actor (and of a
    HybridWorker, which also hosts the policy's rollout engine)."""

    def __init__(self, rank: int, cfg, model_path: str, dtype: str, micro: int, use_reference: bool, share: int = 1):
        """`micro`: DeepSpeed's train_micro_batch_size_per_gpu (bookkeeping: the number of micro steps,
        hence gradient accumulation, is set per update); `use_reference`: load the frozen reference model
        at setup (kl_coef > 0); otherwise it is loaded from `model_path` at the first call that needs it."""
        self.rank, self.cfg = rank, cfg
        self.on_gpu = torch.cuda.is_available() and bool(ray.get_gpu_ids())
        if not self.on_gpu:
            os.environ["DS_ACCELERATOR"] = "cpu"
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(cfg.world_size), LOCAL_RANK="0")
        torch.set_num_threads(auto_threads(cfg.threads, share))  # share: processes computing at once
        # ZeRO calls torch.distributed APIs that torch marks deprecated, once per step
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
        self.args = (model_path, dtype, micro, use_reference)
        self.ref = None
        # learner.compute_dtype=bfloat16 over float32 weights: autocast every forward/backward
        self.autocast_dtype = torch.bfloat16 if cfg.compute_dtype == "bfloat16" and dtype != "bfloat16" else None

    def node_address(self) -> str:
        return ray.util.get_node_ip_address()

    def free_port(self) -> tuple[str, int]:
        """(this node's address, a free TCP port) for a multi-node rendezvous on rank 0."""
        import socket

        with socket.socket() as s:
            s.bind(("", 0))
            return self.node_address(), s.getsockname()[1]

    def setup(self, init_method: str) -> dict:
        """Join the process group and build the engine. Call on every rank at once."""
        import importlib

        import deepspeed

        from trainers.models import load_causal_lm

        if not self.cfg.cpu_shm_comm:  # DeepSpeed would compile its shared-memory allreduce op at start
            # (the package attribute `deepspeed.comm.torch` is torch itself, hence importlib)
            importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None

        model_path, dtype, micro, use_reference = self.args
        backend = self.cfg.backend if self.cfg.backend != "auto" else ("nccl" if self.on_gpu else "gloo")
        deepspeed.init_distributed(dist_backend=backend, init_method=init_method,
                                   rank=self.rank, world_size=self.cfg.world_size,
                                   auto_mpi_discovery=False, verbose=False)
        self.device = torch.device("cuda", 0) if self.on_gpu else torch.device("cpu")
        model = load_causal_lm(model_path, dtype)
        if self.cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.lora = self.cfg.lora.rank > 0
        if self.lora:
            from peft import LoraConfig, get_peft_model

            lc = self.cfg.lora
            model = get_peft_model(model, LoraConfig(r=lc.rank, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                                                     target_modules=list(lc.target_modules), task_type="CAUSAL_LM"))
        params = [p for p in model.parameters() if p.requires_grad]
        if self.cfg.optimizer == "torch_adamw":
            # the fused kernel (one pass over all tensors) where torch has one for the device: the same update
            optimizer = torch.optim.AdamW(params, lr=self.cfg.lr, betas=tuple(self.cfg.betas),
                                          weight_decay=self.cfg.weight_decay, fused=_fused_adamw(params))
        elif self.cfg.optimizer == "deepspeed_adam":
            optimizer = None
        else:
            raise ValueError(f"learner.optimizer={self.cfg.optimizer!r}: use torch_adamw or deepspeed_adam")
        self.micro = micro
        ds_cfg = deepspeed_config(self.cfg, micro, 1, bf16=(dtype == "bfloat16"))
        if optimizer is None:
            ds_cfg["optimizer"] = {"type": "AdamW", "params": {"lr": self.cfg.lr, "betas": list(self.cfg.betas),
                                                               "weight_decay": self.cfg.weight_decay}}
        self.engine, *_ = deepspeed.initialize(model=model, model_parameters=params, optimizer=optimizer,
                                               config=ds_cfg, dist_init_required=False)
        if use_reference:
            self._reference()
        return {"rank": self.rank, "pid": os.getpid(), "backend": backend,
                "trainable": sum(p.numel() for p in params)}

    def _reference(self):
        """The frozen reference model: the run's initial weights (`model_path`), loaded once, so a resumed run
        keeps the reference of its first start."""
        if self.ref is None:
            from trainers.models import load_causal_lm

            model_path, dtype, *_ = self.args
            self.ref = load_causal_lm(model_path, dtype).to(self.device).eval().requires_grad_(False)
        return self.ref

    def train(self, plan, objective: str, settings, temperature: float, recompute_old: bool = False) -> dict:
        """Run this rank's mini-batches (one optimizer step each) with the named objective; returns this rank's
        MetricAccumulator.result() (the group merges the ranks').

        Every rank runs the same number k of micro steps per mini-batch (the plan pads); DeepSpeed's gradient
        accumulation is set to k for each mini-batch and its boundary is the last micro step.
        The behaviour/learner logprob gap is measured before any optimizer step of the step (on the
        first mini-batch, or on all of them when pi_old is recomputed for truncated IS)."""
        from trainers.grpo import recompute_old_logprobs
        from trainers.objectives import MetricAccumulator, get_objective

        obj = get_objective(objective)
        ref = self._reference() if obj.needs_reference(settings) else None
        lr = self.cfg.objective_lr.get(objective, self.cfg.lr)  # learner.objective_lr: this objective's own
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr
        self.engine.train()
        start = time.perf_counter()
        minis_on_device = [[m.trimmed().to(self.device) for m in minis] for minis in plan.minibatches]
        olds = None
        if obj.uses_behaviour_logprobs and (recompute_old or settings.policy.tis_cap is not None):
            # pi_old by the learner, before this step's updates
            with self._autocast():
                olds = [[recompute_old_logprobs(self.engine, m, temperature) for m in minis]
                        for minis in minis_on_device]
        acc = MetricAccumulator(obj.normalised_metrics)
        world = self.cfg.world_size
        for u, (minis, global_count) in enumerate(zip(minis_on_device, plan.global_counts)):
            k = len(minis)
            self.engine.set_train_batch_size(self.micro * k * world)  # gradient accumulation = k micro steps
            normalizer = max(global_count, 1.0) / (world * k)
            for i, micro in enumerate(minis):
                # the micro-step counter runs on across updates of different k: say where the boundary is
                self.engine.set_gradient_accumulation_boundary(i == k - 1)
                with self._autocast():
                    loss, metrics = obj.loss(self.engine, micro, settings, normalizer, temperature, ref,
                                             learner_old=olds[u][i] if olds else None)
                self.engine.backward(loss)
                self.engine.step()
                if u > 0 and olds is None:
                    metrics = {key: v for key, v in metrics.items() if not key.startswith("logprob_gap/")}
                acc.add(metrics, obj.metric_weight(micro))
            acc.end_minibatch()
            norm = self.engine.get_global_grad_norm()
            if norm is not None:
                acc.add_value("grad_norm", float(norm))
        out = acc.result()
        out["mean"]["lr"] = self.engine.get_lr()[0]
        out["mean"]["seconds"] = time.perf_counter() - start
        return out

    @torch.no_grad()
    def sequence_logprobs(self, plan, reference: bool = False) -> list[float]:
        """Summed loss-masked response logprob (temperature 1) of each real row of this rank's plan, in order;
        no optimizer step. Every rank runs the same number of forward passes (ZeRO-3 gathers)."""
        from trainers.objectives import response_logprob_sums

        model = self._reference() if reference else self.engine
        was_training = self.engine.training
        self.engine.eval()
        out: list[float] = []
        try:
            for minis in plan.minibatches:
                for micro in minis:
                    micro = micro.trimmed().to(self.device)
                    with self._autocast():
                        sums = response_logprob_sums(model, micro, 1.0)
                    out += [s for s, v in zip(sums.tolist(), micro.valid_rows().tolist()) if v > 0]
        finally:
            self.engine.train(was_training)
        return out

    def _autocast(self):
        import contextlib

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _full_state(self) -> dict[str, torch.Tensor]:
        """Full (merged) weights with the base model's names. A collective under ZeRO-3."""
        import deepspeed

        module = self.engine.module
        params = list(module.parameters())
        with deepspeed.zero.GatheredParameters(params, enabled=self.cfg.zero_stage == 3):
            if self.rank != 0:
                return {}
            if self.lora:
                module.merge_adapter()
                try:
                    base = module.get_base_model()
                    state = {_base_name(k): v.detach().clone() for k, v in base.state_dict().items()
                             if "lora_" not in k and not is_tied_copy(base, k)}
                finally:
                    module.unmerge_adapter()
                return state
            return {k: v.detach().clone() for k, v in module.state_dict().items() if not is_tied_copy(module, k)}

    def _adapter_state(self) -> dict[str, torch.Tensor]:
        """Only the LoRA adapter's tensors, in PEFT's saved names. A collective under ZeRO-3."""
        import deepspeed
        from peft import get_peft_model_state_dict

        module = self.engine.module
        with deepspeed.zero.GatheredParameters(list(module.parameters()), enabled=self.cfg.zero_stage == 3):
            if self.rank != 0:
                return {}
            return {k: v.detach().clone() for k, v in get_peft_model_state_dict(module).items()}

    def _sync_state(self, adapter_only: bool) -> tuple[dict[str, torch.Tensor], str, dict | None]:
        if adapter_only and self.lora:
            return self._adapter_state(), "lora", _adapter_config(self.engine.module)
        return self._full_state(), "full", None

    def weights(self, version: int, adapter_only: bool = False):
        """Rank 0: (message, flat buffer) for rollout workers; other ranks: None (but join the gather).
        adapter_only (LoRA runs): only the adapter, for engines that serve LoRA adapters."""
        state, kind, adapter_config = self._sync_state(adapter_only)
        if self.rank != 0:
            return None
        return pack_state_dict({k: v.cpu() for k, v in state.items()}, version, kind, adapter_config)

    # -- broadcast weight sync (learner rank 0 -> rollout engines) -------------------
    def sync_manifest(self, adapter_only: bool):
        """What one broadcast sync carries (names, shapes, byte offsets): rank 0 answers, every rank
        takes part (ZeRO-3 gathers)."""
        state, kind, adapter_config = self._sync_state(adapter_only)
        return manifest(state, 0, kind, adapter_config) if self.rank == 0 else None

    def join_sync_group(self, host: str, port: int, world_size: int, backend: str) -> None:
        """Rank 0 only: host a new broadcast group as its rank 0, while every rollout worker joins."""
        from actors.sync_group import SyncGroup

        self.sync_group = None  # a previous group (a member was replaced) is dropped first
        self.sync_group = SyncGroup(host, port, 0, world_size, backend)

    def broadcast_weights(self, version: int, adapter_only: bool) -> int:
        """Every rank (ZeRO-3 gathers); rank 0 sends the flat buffer through the sync group. Returns bytes sent."""
        from actors.sync_group import flat_buffer

        state, _, _ = self._sync_state(adapter_only)
        if self.rank != 0:
            return 0
        flat = flat_buffer(state, self.sync_group.device)
        self.sync_group.send(flat, version)
        return flat.numel()

    def save_checkpoint(self, folder: str, tag: str, hf_folder: str | None, tokenizer_path: str) -> None:
        self.engine.save_checkpoint(folder, tag=tag)
        state = self._full_state()
        if self.rank == 0 and hf_folder:
            from trainers.models import load_tokenizer

            if self.lora:
                self.engine.module.save_pretrained(hf_folder)  # PEFT adapter
            else:
                self.engine.module.save_pretrained(hf_folder, state_dict=state)
            load_tokenizer(tokenizer_path).save_pretrained(hf_folder)

    def load_checkpoint(self, folder: str, tag: str) -> None:
        path, _ = self.engine.load_checkpoint(folder, tag=tag)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint {tag!r} in {folder}")


@ray.remote
class LearnerWorker(LearnerRank):
    """A learner rank in a process of its own."""


def _fused_adamw(params) -> bool | None:
    """True where torch has a fused AdamW for the parameters' device and dtype (CPU and CUDA, float types)."""
    return True if params and all(p.is_floating_point() for p in params) else None


def _adapter_config(module) -> dict:
    """The adapter's adapter_config.json contents (sets as lists, enums as their values)."""
    import json

    config = module.peft_config["default"].to_dict()
    return json.loads(json.dumps(config, default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else str(o)))


def _base_name(key: str) -> str:
    return key.replace(".base_layer.", ".")
