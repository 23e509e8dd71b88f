"""Simulating the paper's protocol on a whole volume: HR -> LR -> (bicubic, model) -> scores.

The LR volume is made slice by slice along ``axis`` with the same degradation as training
(antialiased bicubic by default), after cropping the in-plane size to a multiple of the scale;
its affine has the in-plane voxel size multiplied by the scale and keeps the field of view.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from fagan.data.degrade import degrade, upsample_bicubic
from fagan.data.io import Volume
from fagan.inference.geometry import in_plane_axes, resampled_affine
from fagan.metrics.image import psnr, ssim_map
from fagan.scales import check_scale


class SimulatedPair(NamedTuple):
    hr: Volume  # cropped so the in-plane size divides the scale
    lr: Volume


def slices_along(array: np.ndarray, axis: int) -> torch.Tensor:
    """``array`` (X, Y, Z) -> (n, 1, h, w) tensor of the slices along ``axis``."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, axis, 0), dtype=np.float32))[:, None]


def _volume(slices: torch.Tensor, axis: int) -> np.ndarray:
    return np.moveaxis(slices[:, 0].numpy(), 0, axis)


def simulate_low_resolution(
    volume: Volume, scale: int, axis: int = 2, method: str = "bicubic"
) -> SimulatedPair:
    """Crop ``volume`` to a multiple of ``scale`` in-plane and degrade each slice along ``axis``."""
    check_scale(scale)
    a, b = in_plane_axes(axis)
    index = [slice(None)] * 3
    for i in (a, b):
        keep = volume.array.shape[i] // scale * scale
        if keep == 0:
            raise ValueError(
                f"volume of shape {volume.array.shape} is smaller than the scale {scale} in-plane"
            )
        index[i] = slice(0, keep)
    hr = np.ascontiguousarray(volume.array[tuple(index)], dtype=np.float32)
    lr = _volume(degrade(slices_along(hr, axis), scale, method), axis)
    return SimulatedPair(
        Volume(hr, volume.affine, volume.meta),
        Volume(lr, resampled_affine(volume.affine, 1 / scale, axis), dict(volume.meta, degraded_by=scale)),
    )


def bicubic_volume(lr: Volume, scale: int, axis: int = 2) -> np.ndarray:
    """The bicubic baseline: every slice of ``lr`` upsampled by ``scale`` in its own plane."""
    return _volume(upsample_bicubic(slices_along(lr.array, axis), scale), axis)


class VolumeScores(NamedTuple):
    psnr: float  # dB over every voxel of the volume
    ssim: float  # mean over slices
    psnr_fg: float = math.nan  # dB over the foreground mask's voxels (NaN without a mask)
    ssim_fg: float = math.nan  # local SSIM averaged over the mask's positions (NaN without a mask)


def foreground_mask(hr: np.ndarray, axis: int = 2, fraction: float = 0.1) -> np.ndarray:
    """Boolean mask of the imaged subject: voxels above ``fraction`` of the way from the volume's
    minimum to its 99th percentile, with the holes of each slice (along ``axis``) filled, so
    dark tissue inside the body counts and the air around it does not."""
    from scipy import ndimage

    low = float(hr.min())
    mask = hr > low + fraction * (float(np.percentile(hr, 99)) - low)
    slices = np.moveaxis(mask, axis, 0)
    filled = np.stack([ndimage.binary_fill_holes(s) for s in slices])
    return np.moveaxis(filled, 0, axis)


def score_volume(
    sr: np.ndarray,
    hr: np.ndarray,
    axis: int = 2,
    data_range: float | None = None,
    mask: np.ndarray | None = None,
) -> VolumeScores:
    """PSNR over the whole volume and mean per-slice SSIM, both with an explicit ``data_range``
    (default: the HR volume's max - min, in its own units, i.e. PSNR of the min-max normalised
    volumes with range 1). With a boolean ``mask`` (HR's shape), also both inside the mask: the
    MSE over its voxels, and the local SSIM map averaged over the positions whose window centre
    lies in it (pooled over the volume)."""
    if sr.shape != hr.shape:
        raise ValueError(f"SR shape {sr.shape} differs from HR shape {hr.shape}")
    data_range = float(hr.max() - hr.min()) if data_range is None else float(data_range)
    sr_t, hr_t = slices_along(sr, axis), slices_along(hr, axis)
    whole = psnr(sr_t.reshape(1, 1, -1, sr_t.shape[-1]), hr_t.reshape(1, 1, -1, hr_t.shape[-1]), data_range)
    local = ssim_map(sr_t, hr_t, data_range)  # (n, h - 10, w - 10)
    scores = VolumeScores(float(whole[0]), float(local.flatten(1).mean(dim=1).mean()))
    if mask is None:
        return scores
    if mask.shape != hr.shape:
        raise ValueError(f"mask shape {mask.shape} differs from HR shape {hr.shape}")
    m = torch.from_numpy(np.ascontiguousarray(np.moveaxis(mask, axis, 0), dtype=bool))
    if not m.any():
        raise ValueError("the foreground mask is empty")
    mse = float((sr_t[:, 0].double() - hr_t[:, 0].double())[m].pow(2).mean())
    psnr_fg = math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)
    margin = (m.shape[1] - local.shape[1]) // 2
    inner = m[:, margin : margin + local.shape[1], margin : margin + local.shape[2]]
    ssim_fg = float(local[inner].mean()) if inner.any() else math.nan
    return scores._replace(psnr_fg=psnr_fg, ssim_fg=ssim_fg)
