"""Degradations: fagan.data.degrade."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fagan import FaganError
from fagan.data.degrade import DEGRADATIONS, crop_to_multiple, degrade, upsample_bicubic

SCALES = (2, 4, 8)
#: Agreement of our bicubic degradation with PIL's antialiased bicubic on float images.
PIL_TOLERANCE = 1e-5


def _smooth_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A (1, 1, H, W) image in [0, 1] with structure at several scales."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / 8.0
    image = 0.5 + 0.25 * np.sin(x + 2 * y) + 0.2 * rng.random((height, width))
    return torch.from_numpy(image.astype(np.float32))[None, None]


@pytest.mark.parametrize("method", sorted(DEGRADATIONS))
@pytest.mark.parametrize("scale", SCALES)
def test_shapes_for_every_scale_and_method(scale, method):
    hr = torch.rand(2, 3, 8 * 5, 8 * 3)
    lr = degrade(hr, scale, method)
    assert lr.shape == (2, 3, 40 // scale, 24 // scale)
    assert lr.dtype == hr.dtype
    assert upsample_bicubic(lr, scale).shape == hr.shape


@pytest.mark.parametrize("scale", SCALES)
def test_bicubic_is_exactly_antialiased_interpolate(scale):
    hr = torch.rand(1, 1, 32, 24)
    expected = F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    assert torch.equal(degrade(hr, scale), expected)
    assert torch.equal(degrade(hr, scale, "bicubic"), expected)


@pytest.mark.parametrize("scale", SCALES)
def test_bicubic_agrees_with_pil_reference(scale):
    hr = _smooth_image(48, 64)
    ours = degrade(hr, scale)[0, 0].numpy()
    pil = Image.fromarray(hr[0, 0].numpy(), mode="F").resize((64 // scale, 48 // scale), Image.BICUBIC)
    reference = np.asarray(pil)
    assert reference.shape == ours.shape
    assert np.abs(ours - reference).max() < PIL_TOLERANCE


@pytest.mark.parametrize("scale", SCALES)
def test_kspace_keeps_band_limited_content_on_the_bicubic_grid(scale):
    height, width = 32, 48

    def f(y, x):  # frequencies well inside the kept band for every scale
        return 1.0 + 0.3 * torch.cos(2 * math.pi * 1 * y / height + 0.4) * torch.sin(
            2 * math.pi * 2 * x / width
        )

    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    lr = degrade(f(y, x)[None, None], scale, "kspace")[0, 0]
    # LR pixel m is centred on HR coordinate s*m + (s-1)/2, as with bicubic (align_corners=False).
    m, n = torch.meshgrid(
        torch.arange(height // scale, dtype=torch.float64),
        torch.arange(width // scale, dtype=torch.float64),
        indexing="ij",
    )
    expected = f(scale * m + (scale - 1) / 2, scale * n + (scale - 1) / 2)
    assert torch.allclose(lr, expected, atol=1e-9)


def test_kspace_preserves_intensity_and_removes_high_frequencies():
    constant = torch.full((1, 1, 16, 16), 3.0)
    assert torch.allclose(degrade(constant, 4, "kspace"), torch.full((1, 1, 4, 4), 3.0))
    checkerboard = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2
    lr = degrade(checkerboard.float()[None, None], 2, "kspace")
    assert torch.allclose(lr, torch.full_like(lr, 0.5), atol=1e-6)


def test_kspace_matches_numpy_fft_reference():
    hr = torch.rand(1, 1, 16, 12, dtype=torch.float64)
    ours = degrade(hr, 2, "kspace")[0, 0].numpy()
    spectrum = np.fft.fftshift(np.fft.fft2(hr[0, 0].numpy()))
    block = spectrum[4:12, 3:9]  # central 8 x 6
    fy = (np.arange(8) - 4) / 16
    fx = (np.arange(6) - 3) / 12
    block = block * np.exp(2j * np.pi * 0.5 * (fy[:, None] + fx[None, :]))
    reference = np.fft.ifft2(np.fft.ifftshift(block)).real / 4
    np.testing.assert_allclose(ours, reference, atol=1e-12)


def test_unknown_method_and_scale_list_the_valid_ones():
    hr = torch.rand(1, 1, 16, 16)
    with pytest.raises(FaganError, match="bicubic, kspace"):
        degrade(hr, 2, "nearest")
    with pytest.raises(FaganError, match="2, 4, 8"):
        degrade(hr, 3)
    with pytest.raises(FaganError, match="2, 4, 8"):
        degrade(hr, 16)


def test_sizes_not_divisible_and_wrong_rank_are_refused():
    with pytest.raises(FaganError, match="crop_to_multiple"):
        degrade(torch.rand(1, 1, 18, 16), 4)
    with pytest.raises(FaganError, match=r"\(B, C, H, W\)"):
        degrade(torch.rand(16, 16), 2)


def test_crop_to_multiple_crops_the_end_of_numpy_and_torch():
    array = np.arange(11 * 13).reshape(11, 13)
    cropped = crop_to_multiple(array, 4)
    assert cropped.shape == (8, 12)
    np.testing.assert_array_equal(cropped, array[:8, :12])
    tensor = torch.rand(2, 1, 10, 9, 7)
    assert crop_to_multiple(tensor, 2, axes=(2, 3, 4)).shape == (2, 1, 10, 8, 6)
    assert crop_to_multiple(tensor, 8, axes=(-3,)).shape == (2, 1, 8, 9, 7)
    with pytest.raises(FaganError, match="smaller than the scale"):
        crop_to_multiple(np.zeros((3, 3)), 4)


def test_upsample_bicubic_is_plain_interpolate():
    lr = torch.rand(1, 2, 5, 6)
    expected = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
    assert torch.equal(upsample_bicubic(lr, 4), expected)
