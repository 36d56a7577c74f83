"""The DeepSpeed config of a learner rank, from the typed learner config (plain data, no Ray)."""
from __future__ import annotations


def deepspeed_config(cfg, micro: int, gas: int, bf16: bool) -> dict:
    """`micro` rows per micro step and `gas` accumulation steps at start; the learner resets the accumulation
    for each update (engine.set_train_batch_size), as the number of micro steps follows the batch."""
    return {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": gas,
        "train_batch_size": micro * gas * cfg.world_size,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": {"stage": zero_stage(cfg)},
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def zero_stage(cfg) -> int:
    """The ZeRO stage a rank runs: learner.zero_stage, except that one rank has nothing to partition or
    reduce, so stages 1 and 2 run as stage 0 there (no gradient buckets, no collectives). Stage 3 is kept."""
    return 0 if cfg.world_size == 1 and cfg.zero_stage in (1, 2) else cfg.zero_stage
