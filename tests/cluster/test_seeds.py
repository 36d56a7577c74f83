"""The seed plan (cluster/config/seeds.py): the instances a run trains on, holds out, evaluates, shows as few-shot
examples and calibrates with lie in ranges that never overlap, for realistic bounds. Each range is taken from the
plan's own functions at the bounds' extremes (every seed grows with each argument)."""
import itertools

import pytest

from cluster.config import seeds
from envs.longdoc import HELDOUT_SEED_OFFSET

RUN_SEEDS = 1000  # run seeds and evaluation seeds: 0..1000
STEPS = 100_000
PROMPTS = 4096  # prompts, tasks or instances a step (or a measurement) draws at most
EXAMPLES = 16  # challenger examples per prompt at most
DIFFICULTIES = 100
SET = seeds.FAMILY_TASKS_MAX  # a family's fixed task set at most


def span(low: list[int], high: list[int]) -> tuple[int, int]:
    """The closed range from the first seed at the lowest arguments to the last at the highest."""
    return low[0], high[-1]


RANGES = {  # name -> (use, first seed, last seed)
    "step instances": ("training", *span(seeds.step_instances(0, 0, 1),
                                         seeds.step_instances(RUN_SEEDS, STEPS, PROMPTS))),
    "challenger examples": ("training", *span(seeds.challenger_examples(0, 1, 1),
                                              seeds.challenger_examples(STEPS, PROMPTS, EXAMPLES))),
    "delta_rubric train tasks": ("training", *span(seeds.seed_range(seeds.DELTA_RUBRIC_TRAIN, 1),
                                                   seeds.seed_range(seeds.DELTA_RUBRIC_TRAIN, SET))),
    "task held-out pairs": ("held-out", *span(seeds.seed_range(seeds.TASK_HELDOUT, 1),
                                              seeds.seed_range(seeds.TASK_HELDOUT, PROMPTS))),
    "propose_critic held-out tasks": ("held-out", *span(seeds.seed_range(seeds.PROPOSE_CRITIC_HELDOUT, 1),
                                                        seeds.seed_range(seeds.PROPOSE_CRITIC_HELDOUT, SET))),
    "delta_rubric held-out tasks": ("held-out", *span(seeds.seed_range(seeds.DELTA_RUBRIC_HELDOUT, 1),
                                                      seeds.seed_range(seeds.DELTA_RUBRIC_HELDOUT, SET))),
    "evaluation": ("evaluation", *span(seeds.eval_instances(0, 1),
                                       seeds.eval_instances(RUN_SEEDS, seeds.EVAL_STRIDE))),
    "few-shot": ("few-shot", *span(seeds.fewshot_instances(1), seeds.fewshot_instances(seeds.FEWSHOT_MAX))),
    "calibration": ("calibration", *span(seeds.calibration_instances(0, 0, 1),
                                         seeds.calibration_instances(STEPS, DIFFICULTIES, PROMPTS))),
}

# Overlaps the plan has today, kept so that a run's seeds stay as they were; strict: fixing one fails here.
KNOWN = {
    frozenset({"step instances", "task held-out pairs"}):
        "run seed 895 draws held-out pair 0 as prompt 3823 of step 499 (seed 0: prompt 442 of step 89937)",
    frozenset({"step instances", "calibration"}):
        "the library's start calibration at difficulty 1 measures seeds 97..104, which run seed 0's first step "
        "draws when it has more than 97 prompts",
}


def overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def pairs() -> list:
    """Every two ranges of different uses."""
    out = []
    for a, b in itertools.combinations(RANGES, 2):
        if RANGES[a][0] == RANGES[b][0]:
            continue  # two training ranges, or two held-out sets, may share seeds
        known = KNOWN.get(frozenset({a, b}))
        marks = [pytest.mark.xfail(strict=True, reason=known)] if known else []
        out.append(pytest.param(a, b, id=f"{a} / {b}", marks=marks))
    return out


@pytest.mark.parametrize("a,b", pairs())
def test_ranges_of_different_uses_never_overlap(a, b):
    assert not overlap(RANGES[a][1:], RANGES[b][1:]), f"{a} {RANGES[a][1:]} overlaps {b} {RANGES[b][1:]}"


def test_the_ranges_are_ranges():
    for name, (_, first, last) in RANGES.items():
        assert 0 <= first <= last, name


def test_every_known_overlap_names_two_ranges():
    assert all(len(pair) == 2 and pair <= set(RANGES) for pair in KNOWN)


def test_evaluation_seeds_never_reach_the_next_evaluation_seed():
    assert seeds.eval_instances(1, 1)[0] == seeds.eval_instances(0, seeds.EVAL_STRIDE)[-1] + 1


def test_a_family_set_ends_before_the_next_one_starts():
    starts = sorted([seeds.PROPOSE_CRITIC_HELDOUT, seeds.DELTA_RUBRIC_TRAIN, seeds.DELTA_RUBRIC_HELDOUT,
                     seeds.CHALLENGER_EXAMPLES])
    assert all(b - a >= SET for a, b in zip(starts, starts[1:]))


def test_the_generator_held_out_prompts_are_no_steps_prompts():
    steps = (seeds.generator_order(0, 0), seeds.generator_order(RUN_SEEDS, STEPS))
    assert not overlap(steps, (seeds.GENERATOR_HELDOUT, seeds.GENERATOR_HELDOUT))


@pytest.mark.xfail(strict=True, reason="run seed 996 trains on held-out document 0 as task 8 of step 998")
def test_memory_step_tasks_never_reach_the_held_out_documents():
    train = span(seeds.memory_tasks(0, 0, 1), seeds.memory_tasks(RUN_SEEDS, STEPS, PROMPTS))
    heldout = (HELDOUT_SEED_OFFSET, HELDOUT_SEED_OFFSET + RUN_SEEDS + PROMPTS)  # envs/longdoc.split_tasks
    assert not overlap(train, heldout)


def test_a_step_draws_what_its_seed_and_step_say():
    assert seeds.step_instances(3, 5, 4) == seeds.step_instances(3, 5, 4)
    assert not set(seeds.step_instances(3, 5, PROMPTS)) & set(seeds.step_instances(3, 6, PROMPTS))
    assert seeds.step_sampling(3, 5) != seeds.step_sampling(3, 6)
