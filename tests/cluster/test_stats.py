"""Intervals and pass@k against hand-computed values."""
import math
from itertools import combinations

import pytest

from cluster.evaluation.stats import mean_interval, paired_delta, pass_at_k, wilson


def test_wilson_known_values():
    # Wilson score interval, z = 1.96: 0/10 -> [0, 0.2775], 5/10 -> [0.2366, 0.7634], 64/64 -> [0.9434, 1]
    assert wilson(0, 10) == pytest.approx((0.0, 0.27754), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-4)
    assert wilson(64, 64) == pytest.approx((0.94337, 1.0), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(16, 64)  # the default held-out size: a quarter right is +-0.1
    assert low < 0.25 < high and 0.18 < high - low < 0.23


def test_mean_interval_narrows_with_instances():
    wide, narrow = mean_interval([1.0, 0.0] * 8), mean_interval([1.0, 0.0] * 64)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]


def test_pass_at_k_is_the_exact_combinatorial_probability():
    for n, c, k in [(4, 1, 1), (4, 1, 2), (4, 2, 2), (8, 3, 4), (10, 0, 3), (5, 5, 1)]:
        passing = set(range(c))
        draws = list(combinations(range(n), k))
        want = sum(bool(passing & set(d)) for d in draws) / len(draws)
        assert pass_at_k(n, c, k) == pytest.approx(want), (n, c, k)
    assert pass_at_k(4, 1, 4) == 1.0 and pass_at_k(4, 0, 4) == 0.0
    with pytest.raises(ValueError, match="0 < k <= n"):
        pass_at_k(4, 1, 5)


def test_paired_delta():
    before, after = [0.0] * 32 + [1.0] * 32, [1.0] * 40 + [0.0] * 24  # 32 gained, 24 lost: +8/64
    d = paired_delta(before, after)
    assert d["delta"] == pytest.approx(8 / 64)
    diffs = [a - b for a, b in zip(after, before)]
    sd = math.sqrt(sum((x - 0.125) ** 2 for x in diffs) / 63)
    assert d["delta_ci"] == pytest.approx([0.125 - 1.959964 * sd / 8, 0.125 + 1.959964 * sd / 8], abs=1e-5)
    assert not d["significant"]  # many flips both ways: +0.125 is within the noise
    d = paired_delta([0.0] * 64, [1.0] * 12 + [0.0] * 52)  # 12 gained, none lost
    assert d["significant"] and d["delta_ci"][0] > 0
    with pytest.raises(ValueError, match="equally long"):
        paired_delta([1.0], [1.0, 0.0])
