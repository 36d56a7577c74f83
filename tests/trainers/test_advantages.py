import pytest
import torch

from trainers.advantages import (
    EMABaseline,
    group_advantages,
    role_advantages,
    role_group_ids,
    zero_advantage_fraction,
)

# Non-contiguous ids: group 5 = rewards [1, 0, 2] (positions 0, 2, 4), group 9 = [3, 1] (positions 1, 3).
REWARDS = torch.tensor([1.0, 3.0, 0.0, 1.0, 2.0])
IDS = torch.tensor([5, 9, 5, 9, 5])


def test_two_groups_with_std():
    # group 5: mean 1, deviations [0, -1, 1], unbiased var (0 + 1 + 1) / 2 = 1 -> std 1
    # group 9: mean 2, deviations [1, -1], unbiased var (1 + 1) / 1 = 2 -> std sqrt(2) = 1.41421356
    expected = torch.tensor([0.0, 1 / 1.41421356, -1.0, -1 / 1.41421356, 1.0])
    adv = group_advantages(REWARDS, IDS)
    torch.testing.assert_close(adv, expected, atol=1e-5, rtol=0)


def test_two_groups_mean_only():
    # Dr.GRPO: reward - group mean only -> [1-1, 3-2, 0-1, 1-2, 2-1]
    adv = group_advantages(REWARDS, IDS, normalize_std=False)
    torch.testing.assert_close(adv, torch.tensor([0.0, 1.0, -1.0, -1.0, 1.0]))


def test_int_group_size():
    # groups [1, 0, 2] and [3, 1, 2]; second: mean 2, deviations [1, -1, 0], var (1+1)/2 = 1
    adv = group_advantages(torch.tensor([1.0, 0.0, 2.0, 3.0, 1.0, 2.0]), 3)
    torch.testing.assert_close(adv, torch.tensor([0.0, -1.0, 1.0, 1.0, -1.0, 0.0]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        group_advantages(torch.ones(5), 3)


def test_single_and_uniform_groups_are_exactly_zero():
    # In float64 (0.1 + 0.1 + 0.1) / 3 = 0.10000000000000002 != 0.1; the result must still be
    # exactly 0, not rounding noise blown up by the division by a tiny std.
    rewards = torch.tensor([0.1, 0.1, 0.1, 5.0], dtype=torch.float64)
    ids = torch.tensor([0, 0, 0, 1])
    for norm in (True, False):
        adv = group_advantages(rewards, ids, normalize_std=norm)
        assert torch.equal(adv, torch.zeros(4, dtype=torch.float64))


def test_zero_advantage_fraction():
    # groups: 0 -> [1, 1] equal, 1 -> [0, 1] not, 2 -> [3] single, 3 -> [2, 2] equal: 3 of 4
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 3.0, 2.0, 2.0])
    ids = torch.tensor([0, 0, 1, 1, 2, 3, 3])
    assert zero_advantage_fraction(rewards, ids) == pytest.approx(0.75)
    assert zero_advantage_fraction(torch.tensor([0.0, 1.0, 1.0, 1.0]), 2) == pytest.approx(0.5)


def test_role_group_ids_split_a_prompt_by_role():
    # prompt 0 answered by a proposer and a solver: two groups; ids in order of first appearance
    roles = ["solver", "proposer", "solver", "proposer", "solver"]
    ids = role_group_ids(roles, [0, 0, 0, 1, 1])
    assert ids.tolist() == [0, 1, 0, 2, 3]
    with pytest.raises(ValueError):
        role_group_ids(["solver"], [0, 1])


def test_role_advantages_compare_only_within_a_role():
    # prompt 0: solver rewards [1, 3] (mean 2), proposer rewards [10, 0] (mean 5); Dr.GRPO centring only.
    # Grouped by prompt alone the four would share mean 3.5.
    rewards = torch.tensor([1.0, 10.0, 3.0, 0.0])
    roles = ["solver", "proposer", "solver", "proposer"]
    adv = role_advantages(rewards, roles, [0, 0, 0, 0], normalize_std=False)
    torch.testing.assert_close(adv, torch.tensor([-1.0, 5.0, 1.0, -5.0]))


def test_ema_baseline_by_hand():
    b = EMABaseline(0.9)
    # batch 1: nothing seen -> baselines 0, advantages = rewards; then solver b = mean(1, 3) = 2, judge b = 0.5
    adv = b.advantages(torch.tensor([1.0, 3.0, 0.5]), ["solver", "solver", "judge"])
    torch.testing.assert_close(adv, torch.tensor([1.0, 3.0, 0.5]))
    assert b.values == {"solver": 2.0, "judge": 0.5}
    # batch 2: solver rewards [0, 4] (mean 2) -> advantages [0 - 2, 4 - 2]; b = 0.9 * 2 + 0.1 * 2 = 2
    #          judge reward 1.5 -> 1.5 - 0.5 = 1; b = 0.9 * 0.5 + 0.1 * 1.5 = 0.6
    adv = b.advantages(torch.tensor([0.0, 1.5, 4.0]), ["solver", "judge", "solver"])
    torch.testing.assert_close(adv, torch.tensor([-2.0, 1.0, 2.0]))
    assert b.values["solver"] == pytest.approx(2.0) and b.values["judge"] == pytest.approx(0.6)
    # batch 3: only the judge, reward 0.6 -> advantage 0; its baseline stays 0.9 * 0.6 + 0.1 * 0.6 = 0.6
    assert b.advantages(torch.tensor([0.6]), ["judge"]).tolist() == pytest.approx([0.0], abs=1e-6)
    # checkpoint round trip through JSON
    import json

    state = json.loads(json.dumps(b.state_dict()))
    c = EMABaseline(0.5)
    c.load_state_dict(state)
    assert c.decay == 0.9 and c.values == pytest.approx({"solver": 2.0, "judge": 0.6})
    with pytest.raises(ValueError):
        EMABaseline(1.0)


def test_role_advantages_with_a_baseline_fill_singletons():
    # solver group of two (rewards 1, 3: std-normalised -> -1/sqrt2, +1/sqrt2, baseline cancels);
    # a lone proposer response (reward 4) has no group to compare with: reward - proposer baseline (1.5 after
    # a first batch with reward 1.5)
    b = EMABaseline(0.5)
    b.update(torch.tensor([1.5]), ["proposer"])
    adv = role_advantages(torch.tensor([1.0, 4.0, 3.0]), ["solver", "proposer", "solver"], [0, 0, 0], baseline=b)
    torch.testing.assert_close(adv, torch.tensor([-0.70710678, 2.5, 0.70710678]), atol=1e-5, rtol=0)
    assert b.values["proposer"] == pytest.approx(0.5 * 1.5 + 0.5 * 4.0)
    assert b.values["solver"] == pytest.approx(2.0)
