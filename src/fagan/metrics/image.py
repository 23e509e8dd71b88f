"""Full-reference image quality: PSNR and SSIM on batches of images, one value per image.

Both take an explicit ``data_range`` (the span of possible intensities, e.g. 1.0 on fagan's
normalised scale) instead of assuming 8-bit images. SSIM follows Wang et al. (IEEE TIP 2004):
an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population (not sample)
covariances, averaged over the positions where the window lies inside the image and over
channels, which is what ``skimage.metrics.structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False)`` computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fagan import FaganError

#: Side of SSIM's Gaussian window: an image must be at least this large in both directions.
SSIM_WINDOW = 11


def _check(sr: torch.Tensor, hr: torch.Tensor, data_range: float) -> None:
    if sr.shape != hr.shape or sr.ndim != 4:
        raise FaganError(
            f"expected two (B, C, H, W) tensors of one shape, got {tuple(sr.shape)} and {tuple(hr.shape)}"
        )
    if not data_range > 0:
        raise FaganError(f"data_range must be positive, got {data_range}")


def psnr(sr: torch.Tensor, hr: torch.Tensor, data_range: float) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB: ``(B, C, H, W), (B, C, H, W) -> (B,)``.

    ``10 log10(data_range^2 / MSE)`` with the MSE over each image's channels and pixels;
    identical images give ``inf``.
    """
    _check(sr, hr, data_range)
    mse = (sr.double() - hr.double()).pow(2).flatten(1).mean(dim=1)
    return (10 * torch.log10(data_range**2 / mse)).to(sr.dtype if sr.is_floating_point() else torch.float32)


def gaussian_window(
    size: int = SSIM_WINDOW, sigma: float = 1.5, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The normalised 1D Gaussian ``(size,)`` that is separably applied as SSIM's window."""
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def ssim_map(
    sr: torch.Tensor,
    hr: torch.Tensor,
    data_range: float,
    window_size: int = SSIM_WINDOW,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Local SSIM at every position where the window lies inside the image, averaged over
    channels: ``(B, C, H, W), (B, C, H, W) -> (B, H - window_size + 1, W - window_size + 1)``,
    float64. Position ``(i, j)`` of the map is centred on pixel ``(i + window_size // 2, ...)``.
    """
    _check(sr, hr, data_range)
    height, width = sr.shape[-2:]
    if min(height, width) < window_size:
        raise FaganError(
            f"SSIM needs images of at least {window_size}x{window_size} pixels, got {height}x{width}"
        )
    b, c = sr.shape[:2]
    x = sr.double().reshape(b * c, 1, height, width)
    y = hr.double().reshape(b * c, 1, height, width)
    g = gaussian_window(window_size, sigma).to(x.device)

    def blur(t: torch.Tensor) -> torch.Tensor:  # "valid" separable Gaussian filtering
        t = F.conv2d(t, g.view(1, 1, -1, 1))
        return F.conv2d(t, g.view(1, 1, 1, -1))

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.view(b, c, *s.shape[-2:]).mean(dim=1)


def ssim(
    sr: torch.Tensor,
    hr: torch.Tensor,
    data_range: float,
    window_size: int = SSIM_WINDOW,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean structural similarity per image: ``(B, C, H, W), (B, C, H, W) -> (B,)``.

    Images must be at least ``window_size`` pixels on each side. Computed in float64.
    """
    return ssim_map(sr, hr, data_range, window_size, sigma, k1, k2).flatten(1).mean(dim=1).to(sr.dtype)


__all__ = ["gaussian_window", "psnr", "ssim", "ssim_map"]
