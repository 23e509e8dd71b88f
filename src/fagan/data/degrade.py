"""Making low-resolution inputs from high-resolution slices.

Two degradations, chosen by name in :data:`DEGRADATIONS`:

* ``"bicubic"`` - the FA-GAN paper's: bicubic downsampling with antialiasing, exactly
  ``F.interpolate(hr, scale_factor=1/scale, mode="bicubic", antialias=True, align_corners=False)``
  (the same kernel as PIL's ``Image.resize(..., BICUBIC)``).
* ``"kspace"`` - MRI-physical: keep only the central ``(H/s, W/s)`` block of the 2D Fourier
  transform (k-space), as a scanner acquiring a coarser matrix over the same field of view
  does, and transform back. Intensities are preserved (a constant image stays constant). A
  Fourier phase ramp shifts the result by ``(s - 1) / 2`` HR pixels so that LR pixel ``m`` is
  centred on HR coordinate ``s*m + (s-1)/2`` - the same grid as the bicubic one and as
  :func:`upsample_bicubic` - and the real part is returned (the input is real; the imaginary
  part is only the Nyquist row/column's asymmetry).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F

from fagan import FaganError
from fagan.scales import SCALES, check_scale

ArrayT = TypeVar("ArrayT")


def _bicubic(hr: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)


def central_spectrum(image: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The central (h, w) block of the 2D spectrum of ``image`` (..., H, W), ``h <= H``,
    ``w <= W``, in centred (fftshift) order: what a scanner acquiring an (h, w) matrix over the
    same field of view keeps of k-space. ``torch.fft.ifftshift`` puts it back in FFT order."""
    height, width = image.shape[-2:]
    spectrum = torch.fft.fftshift(torch.fft.fft2(image), dim=(-2, -1))
    top, left = height // 2 - h // 2, width // 2 - w // 2
    return spectrum[..., top : top + h, left : left + w]


def _kspace(hr: torch.Tensor, scale: int) -> torch.Tensor:
    height, width = hr.shape[-2:]
    h, w = height // scale, width // scale
    spectrum = central_spectrum(hr, h, w)
    # Frequencies of the kept block in cycles per HR pixel, then the half-pixel phase ramp.
    shift = (scale - 1) / 2
    fy = (torch.arange(h, device=hr.device) - h // 2).to(hr.dtype) / height
    fx = (torch.arange(w, device=hr.device) - w // 2).to(hr.dtype) / width
    phase = 2 * math.pi * shift * (fy[:, None] + fx[None, :])
    spectrum = spectrum * torch.polar(torch.ones_like(phase), phase)
    lr = torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1))).real
    return (lr / (scale * scale)).to(hr.dtype)


#: Degradation name -> function ``(hr (B, C, H, W), scale) -> lr (B, C, H/s, W/s)``.
DEGRADATIONS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "bicubic": _bicubic,
    "kspace": _kspace,
}


def check_method(method: str) -> str:
    """Return ``method`` if it names a degradation, else raise FaganError listing them."""
    if method not in DEGRADATIONS:
        raise FaganError(f"unknown degradation {method!r}; choose one of {', '.join(sorted(DEGRADATIONS))}")
    return method


def degrade(hr: torch.Tensor, scale: int, method: str = "bicubic") -> torch.Tensor:
    """Make the low-resolution input: ``hr`` (B, C, H, W) -> (B, C, H/scale, W/scale).

    ``H`` and ``W`` must be divisible by ``scale`` (see :func:`crop_to_multiple`); ``scale`` is
    2, 4 or 8 and ``method`` a key of :data:`DEGRADATIONS`.
    """
    check_scale(scale)
    check_method(method)
    if not isinstance(hr, torch.Tensor) or hr.ndim != 4 or not hr.is_floating_point():
        shape = tuple(hr.shape) if hasattr(hr, "shape") else type(hr).__name__
        raise FaganError(f"degrade expects a floating-point (B, C, H, W) tensor, got {shape}")
    height, width = hr.shape[-2:]
    if height % scale or width % scale:
        raise FaganError(
            f"HR size {height}x{width} is not divisible by scale {scale}; crop it first with "
            "fagan.data.degrade.crop_to_multiple"
        )
    return DEGRADATIONS[method](hr, scale)


def upsample_bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline: ``lr`` (B, C, h, w) -> (B, C, h*scale, w*scale), with PyTorch's kernel
    (a = -0.75), not the a = -0.5 of the antialiased downsampling: the stronger baseline here."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)


def crop_to_multiple(x: ArrayT, scale: int, axes: Sequence[int] = (-2, -1)) -> ArrayT:
    """Crop the end of ``axes`` of ``x`` (numpy array or tensor) to multiples of ``scale``."""
    shape = x.shape  # type: ignore[attr-defined]
    index: list[slice] = [slice(None)] * len(shape)
    for axis in axes:
        size = shape[axis]
        keep = size - size % scale
        if keep == 0:
            raise FaganError(f"axis {axis} has size {size}, smaller than the scale {scale}")
        index[axis] = slice(0, keep)
    return x[tuple(index)]  # type: ignore[index]


__all__ = [
    "DEGRADATIONS",
    "SCALES",
    "central_spectrum",
    "check_method",
    "check_scale",
    "crop_to_multiple",
    "degrade",
    "upsample_bicubic",
]
