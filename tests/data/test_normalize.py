"""Per-volume intensity normalisation: fagan.data.normalize."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fagan import FaganError
from fagan.data.normalize import IntensityScaling, fit_scaling


def test_apply_and_invert_on_numpy_and_torch_without_clipping():
    scaling = IntensityScaling(low=10.0, high=110.0)
    x = np.array([0.0, 10.0, 60.0, 110.0, 300.0], dtype=np.float32)
    y = scaling.apply(x)
    np.testing.assert_allclose(y, [-0.1, 0.0, 0.5, 1.0, 2.9], rtol=1e-6)
    assert y.dtype == np.float32
    np.testing.assert_allclose(scaling.invert(y), x, rtol=1e-6)
    t = torch.from_numpy(x)
    assert torch.allclose(scaling.apply(t), torch.from_numpy(y))
    assert torch.allclose(scaling.invert(scaling.apply(t)), t)


def test_fit_scaling_ignores_a_large_empty_background():
    rng = np.random.default_rng(0)
    volume = np.zeros((40, 40, 10), np.float32)
    volume[10:20, 10:20] = rng.uniform(100, 200, (10, 10, 10))  # 6 % foreground
    scaling = fit_scaling(volume)
    assert scaling.low == 0.0
    assert 195 < scaling.high <= 200
    normalised = scaling.apply(volume)
    assert normalised.min() == 0.0 and 1.0 <= normalised.max() < 1.01


def test_fit_scaling_percentiles_are_configurable():
    x = np.arange(1, 1001, dtype=np.float32)
    assert fit_scaling(x, 0, 100) == IntensityScaling(1.0, 1000.0)
    narrow = fit_scaling(x, 10, 90)
    assert 90 < narrow.low < 110 and 800 < narrow.high < 950
    assert fit_scaling(torch.from_numpy(x), 0, 100) == IntensityScaling(1.0, 1000.0)


@pytest.mark.parametrize("array", [np.zeros((4, 4)), np.full((3, 3, 3), 5.0)])
def test_fit_scaling_refuses_constant_images(array):
    with pytest.raises(FaganError, match="constant"):
        fit_scaling(array)


@pytest.mark.parametrize(("p_low", "p_high"), [(50, 50), (-1, 99), (1, 101), (90, 10)])
def test_fit_scaling_refuses_bad_percentiles(p_low, p_high):
    with pytest.raises(FaganError, match="percentiles"):
        fit_scaling(np.arange(10.0), p_low, p_high)


def test_scaling_needs_low_below_high():
    with pytest.raises(FaganError):
        IntensityScaling(1.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=2, max_size=50).filter(
        lambda v: max(v) - min(v) > 1e-2
    )
)
def test_invert_undoes_apply(values):
    x = np.asarray(values, dtype=np.float64)
    scaling = fit_scaling(x)
    assert scaling.low < scaling.high
    np.testing.assert_allclose(scaling.invert(scaling.apply(x)), x, atol=1e-6 * (1 + np.abs(x).max()))
