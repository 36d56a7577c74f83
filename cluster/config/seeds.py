"""Every seed a run uses, named for what it draws. None depends on state kept between steps, so a resumed run
draws what an uninterrupted one would.

Instance seeds (what an environment's sample() gets), by range:

    training      step_instances         seed * 1_000_003 + step * 10_007 + i
                  memory_tasks           3_000_000 + seed * 1_000_003 + step * 1_000 + i
                                         (long documents; their held-out tasks: envs/longdoc.py, from 10**12)
    evaluation    eval_instances         2**40 + eval seed * 2**20 + i
    few-shot      fewshot_instances      2**41 + i
    task sets     task_set(k)            2**42 + 1_000_000 * k + i: a family's fixed sets (held-out tasks, train
                                         pairs, examples), one slot each (TASK_SETS lists who holds which)
    calibration   calibration_instances  2**43 + step * 1_009 + difficulty * 97 + i

Sampling seeds (what generate() gets): step_sampling (plus a second role's offset, the family's own),
phased_sampling, turn_sampling, calibration_sampling, worker_sampling, and the fixed sets' seeds. Order seeds
(random.Random): step_order, generator_order, GENERATOR_HELDOUT. tests/cluster/test_seed_plan.py checks that the
ranges of different uses never overlap.
"""
from __future__ import annotations

RUN_STRIDE = 1_000_003  # between the training seeds of two run seeds
STEP_STRIDE = 10_007  # between two steps of a run


def seed_range(base: int, count: int) -> list[int]:
    """`count` consecutive seeds from the start of a range."""
    return [base + i for i in range(count)]


# -- training ----------------------------------------------------------------------------------------------
def step_instances(run_seed: int, step: int, count: int) -> list[int]:
    """The instances a training step draws (algorithm.prompts_per_step of them)."""
    return seed_range(run_seed * RUN_STRIDE + step * STEP_STRIDE, count)


MEMORY_TASKS = 3_000_000  # the memory family's step tasks start here


def memory_tasks(run_seed: int, step: int, count: int) -> list[int]:
    """The long-document tasks a memory-agent step trains on."""
    return seed_range(MEMORY_TASKS + run_seed * RUN_STRIDE + step * 1_000, count)


# -- a family's fixed task sets, TASK_SET_SIZE wide each -----------------------------------------------------------
TASK_SETS_START = 2**42
TASK_SET_SIZE = 1_000_000
TASK_SETS = 5  # slots handed out: 0 critic's held-out sets, 1 and 2 judge pairs (train, held-out), 3 examples
# of generated questions, 4 online DPO's held-out pairs (each family names its slot where it uses it)


def task_set(k: int) -> int:
    """The first seed of fixed task set k (a set's sampling and order seeds may reuse it)."""
    if not 0 <= k < TASK_SETS:
        raise ValueError(f"task set {k}: the seed plan hands out {TASK_SETS} (cluster/config/seeds.py)")
    return TASK_SETS_START + k * TASK_SET_SIZE


def example_instances(base: int, step: int, prompts: int, examples: int) -> list[int]:
    """Instances shown as examples in a step's prompts, from the task set at `base`: `examples` per prompt, new
    each step."""
    return [base + (step * prompts + g) * max(examples, 1) + i for g in range(prompts) for i in range(examples)]

# -- evaluation and few-shot examples --------------------------------------------------------------------------
EVAL = 2**40  # `evoforge eval` and heldout.*: far above any seed a training run draws
EVAL_STRIDE = 2**20  # instances per evaluation seed at most


def eval_instances(eval_seed: int, count: int) -> list[int]:
    """The instances of an evaluation: a function of its own seed only, the same for every model."""
    return seed_range(EVAL + eval_seed * EVAL_STRIDE, count)


FEWSHOT = 2**41  # env.fewshot solved examples: above training's seeds and evaluation's
FEWSHOT_MAX = 16  # env.fewshot at most


def fewshot_instances(count: int) -> list[int]:
    """The instances whose solved examples precede every prompt (env.fewshot)."""
    return seed_range(FEWSHOT, count)


# -- self-play: calibration (the L5 search) and the other gates' probes ---------------------------------------
CALIBRATION = 2**43  # pass-rate measurements: above every other range


def calibration_instances(step: int, difficulty: int, count: int) -> list[int]:
    """The instances of one pass-rate measurement at a difficulty (step 0: the library's start)."""
    return seed_range(CALIBRATION + step * 1009 + difficulty * 97, count)


def calibration_sampling(run_seed: int, step: int, difficulty: int) -> int:
    """The sampling seed of one pass-rate measurement."""
    return run_seed * 31 + step * 7 + difficulty


GATE_PROMPTS = [11, 12, 13]  # a candidate environment's instance prompts, for the novelty gate


def review_instance(step: int) -> int:
    """The instance a candidate environment shows its reviewer (the L4 gate)."""
    return step * 101 + 7


GENERATOR_HELDOUT = 2**41 + 17  # the generator's held-out prompts and sampling: the same before and after


def generator_order(run_seed: int, step: int) -> int:
    """Which library environments a generator step shows as examples."""
    return run_seed * RUN_STRIDE + step * 7


# -- sampling and order ------------------------------------------------------------------------------------------
MEMORY_HELDOUT = 5_000_011  # the memory family's held-out episodes (greedy: only ties depend on it)


def step_sampling(run_seed: int, step: int, offset: int = 0) -> int:
    """The sampling seed of a step's generate call; a second role in the step adds its offset."""
    return run_seed * 7919 + step + offset


def phased_sampling(run_seed: int, step: int) -> int:
    """The sampling seed of a step with several generate phases: phase k adds k."""
    return run_seed * 7919 + step * 101


def turn_sampling(seed: int, turn: int) -> int:
    """The sampling seed of one turn of an agent loop started at `seed`."""
    return seed + 7_919 * turn


def worker_sampling(seed: int, worker: int) -> int:
    """A rollout worker's share of a generate call: its own seed, so a re-issued share samples the same."""
    return seed * 1000 + worker


def step_order(run_seed: int, step: int) -> int:
    """Which pairs or candidates a step shows, and in which order (random.Random)."""
    return run_seed * RUN_STRIDE + step
