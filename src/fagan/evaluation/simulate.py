"""Simulating the paper's protocol on a whole volume: HR -> LR -> (bicubic, model) -> scores.

The LR volume is made slice by slice along ``axis`` with the same degradation as training
(antialiased bicubic by default), after cropping the in-plane size to a multiple of the scale;
its affine has the in-plane voxel size multiplied by the scale and keeps the field of view.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from fagan.data.degrade import degrade, upsample_bicubic
from fagan.data.io import Volume
from fagan.inference.geometry import in_plane_axes, resampled_affine
from fagan.metrics import psnr, ssim
from fagan.scales import check_scale


class SimulatedPair(NamedTuple):
    hr: Volume  # cropped so the in-plane size divides the scale
    lr: Volume


def _slices(array: np.ndarray, axis: int) -> torch.Tensor:
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
    lr = _volume(degrade(_slices(hr, axis), scale, method), axis)
    return SimulatedPair(
        Volume(hr, volume.affine, volume.meta),
        Volume(lr, resampled_affine(volume.affine, 1 / scale, axis), dict(volume.meta, degraded_by=scale)),
    )


def bicubic_volume(lr: Volume, scale: int, axis: int = 2) -> np.ndarray:
    """The bicubic baseline: every slice of ``lr`` upsampled by ``scale`` in its own plane."""
    return _volume(upsample_bicubic(_slices(lr.array, axis), scale), axis)


class VolumeScores(NamedTuple):
    psnr: float  # dB over every voxel of the volume
    ssim: float  # mean over slices


def score_volume(
    sr: np.ndarray, hr: np.ndarray, axis: int = 2, data_range: float | None = None
) -> VolumeScores:
    """PSNR over the whole volume and mean per-slice SSIM, both with an explicit ``data_range``
    (default: the HR volume's max - min, in its own units)."""
    if sr.shape != hr.shape:
        raise ValueError(f"SR shape {sr.shape} differs from HR shape {hr.shape}")
    data_range = float(hr.max() - hr.min()) if data_range is None else float(data_range)
    sr_t, hr_t = _slices(sr, axis), _slices(hr, axis)
    whole = psnr(sr_t.reshape(1, 1, -1, sr_t.shape[-1]), hr_t.reshape(1, 1, -1, hr_t.shape[-1]), data_range)
    return VolumeScores(float(whole[0]), float(ssim(sr_t, hr_t, data_range).mean()))
