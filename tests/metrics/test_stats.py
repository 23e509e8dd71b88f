"""Summaries over volumes and the paired test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fagan.metrics.stats import paired_test, summarise


def test_summary_matches_the_t_interval_by_hand() -> None:
    values = [30.0, 31.0, 33.0, 34.0]
    s = summarise(values)
    mean, std = 32.0, float(np.std(values, ddof=1))
    half = 3.182446305284263 * std / 2  # t(0.975, 3) * std / sqrt(4)
    assert s.n == 4 and s.mean == pytest.approx(mean) and s.std == pytest.approx(std)
    assert (s.ci_low, s.ci_high) == pytest.approx((mean - half, mean + half))


def test_one_volume_has_no_spread_and_bad_scores_are_errors() -> None:
    s = summarise([28.5])
    assert s.mean == 28.5 and s.n == 1 and math.isnan(s.std) and math.isnan(s.ci_low)
    with pytest.raises(ValueError, match="NaN"):
        summarise([1.0, float("nan")])
    with pytest.raises(ValueError):
        summarise([])


def test_wilcoxon_on_five_volumes_bottoms_out_at_one_sixteenth() -> None:
    """Five volumes all improved: the exact two-sided p-value is 2 / 2**5."""
    a, b = [30.0, 31.5, 29.0, 35.0, 33.0], [29.0, 31.0, 28.0, 34.9, 32.0]
    t = paired_test(a, b)
    assert t.n == 5 and t.p_value == pytest.approx(0.0625)
    assert t.median_difference == pytest.approx(1.0)
    assert paired_test(b, a).median_difference == pytest.approx(-1.0)


def test_paired_test_without_differences_is_nan_not_an_error() -> None:
    t = paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert math.isnan(t.p_value) and t.median_difference == 0.0
    with pytest.raises(ValueError, match="equal length"):
        paired_test([1.0, 2.0], [1.0])
