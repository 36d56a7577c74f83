import pytest
import torch

from trainers.advantages import group_advantages, zero_advantage_fraction

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
