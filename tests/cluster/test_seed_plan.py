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
EXAMPLES = 16  # examples per prompt at most
DIFFICULTIES = 100
SET = seeds.TASK_SET_SIZE  # a family's fixed task set at most


def span(low: list[int], high: list[int]) -> tuple[int, int]:
    """The closed range from the first seed at the lowest arguments to the last at the highest."""
    return low[0], high[-1]


RANGES = {  # name -> (use, first seed, last seed)
    "step instances": ("training", *span(seeds.step_instances(0, 0, 1),
                                         seeds.step_instances(RUN_SEEDS, STEPS, PROMPTS))),
    "evaluation": ("evaluation", *span(seeds.eval_instances(0, 1),
                                       seeds.eval_instances(RUN_SEEDS, seeds.EVAL_STRIDE))),
    "few-shot": ("few-shot", *span(seeds.fewshot_instances(1), seeds.fewshot_instances(seeds.FEWSHOT_MAX))),
    "calibration": ("calibration", *span(seeds.calibration_instances(0, 0, 1),
                                         seeds.calibration_instances(STEPS, DIFFICULTIES, PROMPTS))),
    **{f"task set {k}": ("task set", *span(seeds.seed_range(seeds.task_set(k), 1),
                                           seeds.seed_range(seeds.task_set(k), SET)))
       for k in range(seeds.TASK_SETS)},
}
# the examples of generated questions: new ones each step, from their task set
EXAMPLE_SPAN = span(seeds.example_instances(seeds.task_set(3), 0, 1, 1),
                    seeds.example_instances(seeds.task_set(3), STEPS, PROMPTS, EXAMPLES))


def overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def pairs() -> list:
    """Every two ranges of different uses."""
    out = []
    for a, b in itertools.combinations(RANGES, 2):
        if RANGES[a][0] == RANGES[b][0] and RANGES[a][0] != "task set":
            continue  # two training ranges may share seeds; two task sets may not
        out.append(pytest.param(a, b, id=f"{a} / {b}"))
    return out


@pytest.mark.parametrize("a,b", pairs())
def test_ranges_of_different_uses_never_overlap(a, b):
    assert not overlap(RANGES[a][1:], RANGES[b][1:]), f"{a} {RANGES[a][1:]} overlaps {b} {RANGES[b][1:]}"


def test_the_ranges_are_ranges():
    for name, (_, first, last) in RANGES.items():
        assert 0 <= first <= last, name


def test_the_examples_stay_in_their_task_set_for_a_realistic_run():
    """Examples of generated questions: 8 prompts x 4 examples a step, for 30,000 steps, within slot 3."""
    last = seeds.example_instances(seeds.task_set(3), 30_000, 8, 4)[-1]
    assert seeds.task_set(3) <= EXAMPLE_SPAN[0] and last < seeds.task_set(3) + SET
    assert not any(overlap(EXAMPLE_SPAN, RANGES[name][1:]) for name in RANGES if not name.startswith("task set"))


def test_each_family_holds_its_own_task_sets():
    """The slots the families name where they use them: all different, all handed out by the plan."""
    from cluster.episodes.challenger import episode as challenger
    from cluster.episodes.delta_rubric import episode as delta_rubric
    from cluster.episodes.propose_critic import episode as propose_critic
    from cluster.episodes.task import episode as task

    used = [propose_critic.HELDOUT, delta_rubric.TRAIN, delta_rubric.HELDOUT, challenger.EXAMPLES, task.HELDOUT]
    assert sorted(used) == [seeds.task_set(k) for k in range(seeds.TASK_SETS)]
    with pytest.raises(ValueError, match="task set 5: the seed plan hands out 5"):
        seeds.task_set(seeds.TASK_SETS)


def test_evaluation_seeds_never_reach_the_next_evaluation_seed():
    assert seeds.eval_instances(1, 1)[0] == seeds.eval_instances(0, seeds.EVAL_STRIDE)[-1] + 1


def test_a_task_set_ends_before_the_next_one_starts():
    starts = [seeds.task_set(k) for k in range(seeds.TASK_SETS)]
    assert all(b - a >= SET for a, b in zip(starts, starts[1:]))


def test_the_generator_held_out_prompts_are_no_steps_prompts():
    steps = (seeds.generator_order(0, 0), seeds.generator_order(RUN_SEEDS, STEPS))
    assert not overlap(steps, (seeds.GENERATOR_HELDOUT, seeds.GENERATOR_HELDOUT))


def test_memory_step_tasks_never_reach_the_held_out_documents():
    train = span(seeds.memory_tasks(0, 0, 1), seeds.memory_tasks(RUN_SEEDS, STEPS, PROMPTS))
    heldout = (HELDOUT_SEED_OFFSET, HELDOUT_SEED_OFFSET + RUN_SEEDS + PROMPTS)  # envs/longdoc.split_tasks
    assert not overlap(train, heldout)


def test_a_step_draws_what_its_seed_and_step_say():
    assert seeds.step_instances(3, 5, 4) == seeds.step_instances(3, 5, 4)
    assert not set(seeds.step_instances(3, 5, PROMPTS)) & set(seeds.step_instances(3, 6, PROMPTS))
    assert seeds.step_sampling(3, 5) != seeds.step_sampling(3, 6)
