"""PSNR and SSIM against scikit-image on the same arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fagan import FaganError
from fagan.data import SliceDataset, sample_volumes
from fagan.data.degrade import degrade, upsample_bicubic
from fagan.metrics import psnr, ssim


def _pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Three (SR, HR) image pairs: noise, a smooth ramp, and a real MRI slice's bicubic x2."""
    rng = np.random.default_rng(0)
    hr = np.zeros((3, 1, 40, 48), np.float32)
    hr[0, 0] = rng.uniform(0, 1, (40, 48))
    hr[1, 0] = np.linspace(0, 1, 48)[None] * np.linspace(0.2, 1, 40)[:, None]
    slice_ = SliceDataset([sample_volumes("val")[0].path], 2, max_slices_per_volume=1)[0].hr
    hr[2] = slice_[:, 20:60, 20:68].numpy()
    hr_t = torch.from_numpy(hr)
    sr = hr_t + 0.05 * torch.from_numpy(rng.standard_normal(hr.shape).astype(np.float32))
    sr[2] = upsample_bicubic(degrade(hr_t[2:3], 2), 2)[0]
    return sr, hr_t


@pytest.mark.parametrize("data_range", [1.0, 2.5])
def test_psnr_and_ssim_match_scikit_image(data_range):
    sr, hr = _pairs()
    ours_psnr, ours_ssim = psnr(sr, hr, data_range), ssim(sr, hr, data_range)
    assert ours_psnr.shape == ours_ssim.shape == (3,)
    for i in range(3):
        a, b = hr[i, 0].numpy(), sr[i, 0].numpy()
        ref_psnr = peak_signal_noise_ratio(a, b, data_range=data_range)
        ref_ssim = structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range
        )
        assert abs(float(ours_psnr[i]) - ref_psnr) < 1e-3
        assert abs(float(ours_ssim[i]) - ref_ssim) < 1e-3


def test_multichannel_ssim_averages_channels_like_scikit_image():
    rng = np.random.default_rng(1)
    hr = torch.from_numpy(rng.uniform(0, 1, (2, 3, 24, 24)).astype(np.float32))
    sr = (hr + 0.1 * torch.from_numpy(rng.standard_normal(hr.shape).astype(np.float32))).clamp(0, 1)
    for i in range(2):
        ref = structural_similarity(
            hr[i].numpy(),
            sr[i].numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0,
        )
        assert abs(float(ssim(sr, hr, 1.0)[i]) - ref) < 1e-3


def test_identical_images():
    _, hr = _pairs()
    assert torch.isinf(psnr(hr, hr, 1.0)).all()
    torch.testing.assert_close(ssim(hr, hr, 1.0), torch.ones(3))


def test_bad_inputs_are_clear_errors():
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(FaganError, match="at least 11x11"):
        ssim(x, x, 1.0)
    with pytest.raises(FaganError, match="one shape"):
        psnr(x, x[..., :4], 1.0)
    with pytest.raises(FaganError, match="positive"):
        psnr(x, x, 0.0)
