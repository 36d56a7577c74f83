"""Intervals for held-out measurements: how large a change must be before a reader should believe it.

    wilson(successes, n)          95% Wilson score interval of a rate (scores in [0, 1] count as
                                  fractional successes: the interval of the mean score)
    pass_at_k(n, c, k)            unbiased pass@k from n samples of which c passed (Chen et al., 2021)
    paired_delta(before, after)   mean change on the same instances with a 95% interval (normal
                                  approximation on the per-instance differences)

Plain formulas (scipy is not a dependency for three lines of arithmetic); z = 1.96.
"""
from __future__ import annotations

import math
from typing import Sequence

Z95 = 1.959963984540054


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of successes / n; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = min(1.0, max(0.0, successes / n))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if p == 0.0 else max(0.0, centre - half)  # exact at the ends (no rounding crumbs)
    high = 1.0 if p == 1.0 else min(1.0, centre + half)
    return low, high


def mean_interval(scores: Sequence[float]) -> tuple[float, float]:
    """Wilson interval of the mean of scores in [0, 1]."""
    return wilson(sum(scores), len(scores))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples, drawn without replacement from n of which c pass,
    passes: 1 - C(n - c, k) / C(n, k)."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 < k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def paired_delta(before: Sequence[float], after: Sequence[float], z: float = Z95) -> dict:
    """Mean of after - before over the same instances, its 95% interval, and whether the interval
    excludes zero (`significant`)."""
    if len(before) != len(after) or not before:
        raise ValueError(f"paired_delta needs two equally long, non-empty score lists ({len(before)} vs {len(after)})")
    diffs = [a - b for a, b in zip(after, before)]
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    half = z * math.sqrt(var / n)
    low, high = mean - half, mean + half
    return {"delta": mean, "delta_ci": [low, high], "significant": low > 0 or high < 0}
