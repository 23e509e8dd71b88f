"""Statistics over volumes: mean, spread and a confidence interval, and a paired test.

Scores are computed per volume (fastMRI's convention) and then summarised over volumes, so
``n`` below is the number of test volumes, not of slices: slices of one subject are not
independent samples. Where a subject has several test volumes, the evaluation passes each
subject's mean instead (:meth:`fagan.evaluation.evaluate.Evaluation.samples`), and ``n`` counts
subjects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Summary(NamedTuple):
    """Mean, sample standard deviation and two-sided 95% confidence interval of the mean
    (Student's t with ``n - 1`` degrees of freedom) over ``n`` values. With one value the
    spread and interval are NaN."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int


def summarise(values: Sequence[float]) -> Summary:
    """Summarise per-volume scores; NaN/inf values are an error, not silently dropped."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"summarise needs a non-empty list of numbers, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("summarise got NaN or infinite scores; check the inputs that produced them")
    n, mean = x.size, float(x.mean())
    if n == 1:
        return Summary(mean, math.nan, math.nan, math.nan, 1)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return Summary(mean, std, mean - half, mean + half, n)


class PairedTest(NamedTuple):
    """Wilcoxon signed-rank test of ``a`` against ``b`` over the same volumes."""

    median_difference: float  # median of a - b
    statistic: float
    p_value: float  # two-sided; NaN when the test cannot run (fewer than 2 non-zero differences)
    n: int


def paired_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test on the paired differences ``a - b``.

    With ``n`` volumes the smallest attainable two-sided p-value (exact test) is ``2 / 2**n``:
    0.0625 for five volumes, so small test sets cannot reach p < 0.05 whatever the effect.
    """
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired_test needs two lists of equal length, got {x.shape} and {y.shape}")
    d = x - y
    median = float(np.median(d)) if d.size else math.nan
    if np.count_nonzero(d) < 2:
        return PairedTest(median, math.nan, math.nan, int(d.size))
    result = stats.wilcoxon(x, y, alternative="two-sided")
    return PairedTest(median, float(result.statistic), float(result.pvalue), int(d.size))


__all__ = ["PairedTest", "Summary", "paired_test", "summarise"]
