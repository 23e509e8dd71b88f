"""Super-resolving slices and whole volumes with a trained generator.

Slices go through the network in batches. A slice larger than ``tile`` low-resolution pixels is
cut into overlapping tiles whose outputs are blended with weights that fall linearly to the
tile's edges, so memory is bounded by the tile size, not the slice size. The default tile makes
a 1024x1024 output at every scale (:func:`default_tile`), so a slice of up to 512 pixels at x2
or 256 at x4 goes through whole: self-attention then sees the whole slice, and there is no seam.
A tiled output differs from the whole one near the seams, by up to 1% of the intensity range on
the held-out abdomen at x2 with 128-pixel tiles, because each tile's self-attention sees only
that tile. A batch is also split so that one network call makes at most ``max_pixels`` output
pixels. Intensities are normalised per volume exactly as in training and mapped back afterwards.
Each whole output slice is then, by default, projected onto the images that reproduce its input
exactly when downsampled (:mod:`fagan.inference.consistency`); an ONNX export holds the network
alone.

:func:`upscale_volume` runs a copy of the generator rewritten for inference
(:func:`fagan.models.fast.optimize_for_inference`: batch norms folded, and on CPU the output
convolution as taps), which gives the same output to fp32 rounding; the figures are in
``BENCHMARKS.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from fagan import FaganError
from fagan.data.io import Volume, is_constant
from fagan.data.normalize import IntensityScaling, fit_scaling
from fagan.inference.consistency import project_onto_input
from fagan.inference.geometry import in_plane_axes, resampled_affine

#: Output side of the default tile: one network call of the default FA-GAN on it adds about
#: 0.7-0.8 GB in fp32 on CPU at x2, x4 and x8 alike (BENCHMARKS.md, "One large slice").
DEFAULT_TILE_OUTPUT = 1024
DEFAULT_OVERLAP = 16
#: Output pixels per network call (16 slices of 256x256): about 1.2 GB of activations at most for
#: the default FA-GAN in fp32 on CPU (x8, one 1024x1024 tile); see BENCHMARKS.md.
DEFAULT_MAX_PIXELS = 2**20
PRECISIONS = ("fp32", "bf16")


#: Negative values no deeper than this fraction of the bright end (the 99.5th percentile) are
#: taken for undershoot of a magnitude image, which resampling and reconstruction leave: the
#: antialiased bicubic downsampling of a step rings 1.2-1.3% below it, and of a thin line up to 3%;
#: bicubic upsampling of a step 4-5%; the held-out shoulder, downsampled, reaches 2.7% of its
#: bright end, and the 2 mm brain as stored 4.7%. Signed images (phase, differences, CT-like
#: values) go about as deep below 0 as they rise above it.
UNDERSHOOT = 0.1


def is_magnitude(array: np.ndarray) -> bool:
    """Whether ``array`` is a magnitude image, as far as its values tell: none below 0, or only
    shallow undershoot (:data:`UNDERSHOOT`). Its output is then clipped at 0."""
    low = float(array.min())
    if low >= 0.0:
        return True
    return low >= -UNDERSHOOT * bright_end(array)


def bright_end(array: np.ndarray) -> float:
    """The 99.5th percentile of ``array``: exact up to 2**20 values, else from 2**20 of them drawn
    at random (a fixed seed; a stride could fall on a few planes of the volume), so that it costs
    milliseconds and no copy of a large volume."""
    flat = array.ravel(order="K")  # a view of any contiguous array
    if flat.size > 2**20:
        flat = flat[np.random.default_rng(0).integers(0, flat.size, 2**20)]
    return float(np.percentile(flat, 99.5))


def default_tile(scale: int) -> int:
    """The default tile side in input pixels at ``scale``: 512 at x2, 256 at x4, 128 at x8."""
    return max(DEFAULT_TILE_OUTPUT // scale, 2 * DEFAULT_OVERLAP + 1)


def pick_device(device: str = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    return torch.device(device)


def _windows(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of windows of length ``min(tile, size)`` covering ``[0, size)``."""
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    return [*starts, size - tile]


def _ramp(length: int, fade: int) -> torch.Tensor:
    """1D blending weights: a linear rise over ``fade`` samples at each end, never zero."""
    i = torch.arange(length, dtype=torch.float32)
    edge = torch.minimum(i + 0.5, length - i - 0.5)
    return torch.clamp(edge / max(fade, 1), min=1e-3, max=1.0)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "bf16":
        if device.type != "cuda":
            raise ValueError("bf16 inference is for CUDA GPUs; use precision fp32 on the CPU")
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _run(generator: nn.Module, lr: torch.Tensor, max_pixels: int) -> torch.Tensor:
    """``generator(lr)`` in float32, in sub-batches of at most ``max_pixels`` output pixels."""
    scale: int = generator.scale  # type: ignore[assignment]
    per_slice = lr.shape[2] * lr.shape[3] * scale**2
    step = max(1, max_pixels // per_slice) if max_pixels > 0 else lr.shape[0]
    if step >= lr.shape[0]:
        return generator(lr).float()
    return torch.cat([generator(part).float() for part in lr.split(step)])


def _dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """``x`` rotated by ``k`` quarter turns in its last two axes, then mirrored if ``flip``."""
    x = torch.rot90(x, k, (-2, -1))
    return x.flip(-1) if flip else x


def _undo_dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    return torch.rot90(x.flip(-1) if flip else x, -k, (-2, -1))


@torch.inference_mode()
def upscale_batch(
    generator: nn.Module,
    lr: torch.Tensor,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    precision: str = "fp32",
    self_ensemble: bool = False,
) -> torch.Tensor:
    """Super-resolve a batch ``lr`` (B, C, h, w) -> (B, C, s*h, s*w), tiling when h or w > tile.

    ``tile`` and ``overlap`` are in low-resolution pixels; ``tile`` None is
    :func:`default_tile` of the generator's scale, and ``tile <= 0`` disables tiling.
    ``max_pixels`` caps the output pixels of one network call (``<= 0``: no cap); ``precision``
    ``"bf16"`` runs the network under bf16 autocast (CUDA only).

    ``self_ensemble`` (EDSR's geometric self-ensemble) super-resolves the eight rotations and
    mirror images of each slice, undoes each transform on its output and averages the eight:
    eight times the compute, for a more accurate output (the figures are in the weights' model
    card).
    """
    transforms = [(k, flip) for k in range(4) for flip in (False, True)] if self_ensemble else [(0, False)]
    if tile is None:
        tile = default_tile(generator.scale)  # type: ignore[arg-type]
    with _autocast(lr.device, precision):
        total = sum(
            _undo_dihedral(_upscale(generator, _dihedral(lr, k, flip), tile, overlap, max_pixels), k, flip)
            for k, flip in transforms
        )
    return total / len(transforms)


def _upscale(
    generator: nn.Module, lr: torch.Tensor, tile: int, overlap: int, max_pixels: int
) -> torch.Tensor:
    scale: int = generator.scale  # type: ignore[assignment]
    b, c, h, w = lr.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return _run(generator, lr, max_pixels)
    if overlap >= tile:
        raise ValueError(f"tile overlap ({overlap}) must be smaller than the tile ({tile})")
    out = torch.zeros(b, c, h * scale, w * scale, device=lr.device)
    weight = torch.zeros(1, 1, h * scale, w * scale, device=lr.device)
    th, tw = min(tile, h), min(tile, w)
    wy = _ramp(th * scale, overlap * scale).to(lr.device)
    wx = _ramp(tw * scale, overlap * scale).to(lr.device)
    blend = wy[:, None] * wx[None, :]
    for y in _windows(h, tile, overlap):
        for x in _windows(w, tile, overlap):
            sr = _run(generator, lr[:, :, y : y + th, x : x + tw], max_pixels)
            region = (
                slice(None),
                slice(None),
                slice(y * scale, (y + th) * scale),
                slice(x * scale, (x + tw) * scale),
            )
            out[region] += sr * blend
            weight[region] += blend
    return out / weight


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class UnfittableVolume(FaganError):
    """One volume of a series has no intensity normalisation (it is constant but for a few
    voxels); ``index`` and ``count`` name it. Callers add what their user can do about it."""

    def __init__(self, index: int, count: int, reason: str) -> None:
        super().__init__(f"volume {index} of {count} cannot be normalised ({reason})")
        self.index, self.count = index, count


def _fit(array: np.ndarray, scaling: IntensityScaling | None, t: int, count: int) -> IntensityScaling | None:
    """The normalisation of volume ``t`` of ``count`` (``scaling`` if given, else its own fit);
    None for a constant volume of a series."""
    if count > 1 and is_constant(array):
        return None
    if scaling is not None:
        return scaling
    try:
        return fit_scaling(array)
    except FaganError as exc:
        if count == 1:
            raise
        raise UnfittableVolume(t, count, str(exc)) from None


def upscale_volume(
    volume: Volume,
    generator: nn.Module,
    axis: int = 2,
    batch_size: int = 4,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    device: torch.device | str = "cpu",
    progress: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    precision: str = "fp32",
    optimize: bool = True,
    self_ensemble: bool = False,
    consistency: bool = True,
    scaling: IntensityScaling | None = None,
    clip_negative: bool | None = None,
) -> Volume:
    """Super-resolve every slice of ``volume`` along ``axis`` in its own plane.

    A 4D volume ``(X, Y, Z, T)`` (read with ``frame=ALL_FRAMES``) is upscaled volume by volume, each
    normalised by its own fit (a diffusion series' b0 and weighted volumes differ several-fold in
    brightness), and comes back 4D; whether its output is clipped at 0 is decided once, for all. A
    constant volume in it (a dummy scan) comes back constant. Every fit is made before any slice
    is upscaled, so a volume that cannot be normalised is refused, by number, before any work.

    ``optimize`` runs a copy of ``generator`` rewritten by
    :func:`fagan.models.fast.optimize_for_inference` (same output to fp32 rounding, faster).
    ``self_ensemble`` averages the outputs of the eight rotations and mirror images of each slice
    (see :func:`upscale_batch`). ``consistency`` then projects each output slice onto the
    images whose antialiased bicubic downsampling is exactly the input slice
    (:mod:`fagan.inference.consistency`); turn it off for weights trained with another
    degradation. ``scaling`` is the intensity normalisation of the network's input, in the
    volume's stored values (for a MONOCHROME1 DICOM it is turned round, as the network sees the
    values negated); by default it is fitted to the volume (:func:`fagan.data.normalize.fit_scaling`). Passing
    one normalises several volumes alike, or measures how the output depends on it
    (``benchmarks/intensity_sensitivity.py``); the output is mapped back with it either way.

    Returns a float32 volume with the two in-plane axes ``s`` times longer, voxel size divided by
    ``s`` along them, the same orientation and field of view (see
    :mod:`fagan.inference.geometry`), and intensities in the input's units. A MONOCHROME1 DICOM
    (``meta["photometric"]``: the lowest value is displayed white) goes through the network
    upside down, so that it sees tissue bright on a dark background as in training, and comes
    back in the stored values.

    A magnitude image (:func:`is_magnitude`: no negative value, or only shallow undershoot from
    resampling) gets no negative value in its output: after the consistency projection, values
    below 0 are set to 0 (``clip_negative``: None decides by :func:`is_magnitude`, True or False
    forces it). Like that projection, this is a projection onto a convex set that holds
    the true (non-negative) image, so it cannot move an output away from it; the output then
    reproduces its input exactly except where it was clipped, in the background and next to edges
    (the measurements are in ``docs/model-choices.md``).
    """
    from tqdm import tqdm

    device = torch.device(device)
    scale: int = generator.scale  # type: ignore[assignment]
    in_plane_axes(axis)
    if volume.array.ndim not in (3, 4):
        raise ValueError(f"expected a 3D or 4D volume, got shape {volume.array.shape}")
    sign = -1.0 if volume.meta.get("photometric") == "MONOCHROME1" else 1.0
    if scaling is not None and sign < 0:  # given in stored values: the network sees them negated
        scaling = IntensityScaling(-scaling.high, -scaling.low)
    # in stored values, MONOCHROME1 or not
    magnitude = is_magnitude(volume.array) if clip_negative is None else clip_negative
    frames = volume.array[..., None] if volume.array.ndim == 3 else volume.array
    count = frames.shape[3]

    def seen(t: int) -> np.ndarray:  # volume t as the network sees it (a view unless MONOCHROME1)
        return frames[..., t] if sign > 0 else -frames[..., t]

    fits = [_fit(seen(t), scaling, t, count) for t in range(count)]
    n, h, w = np.moveaxis(frames[..., 0], axis, 0).shape
    result = np.empty((count, n, h * scale, w * scale), dtype=np.float32)
    if optimize:
        from fagan.models.fast import optimize_for_inference

        generator = optimize_for_inference(generator, device)
    else:
        generator = generator.to(device).eval()
    bar = tqdm(total=n * count, unit="slice", desc=f"x{scale}", disable=not progress, leave=False)
    for t, fit in enumerate(fits):
        if fit is None:  # a constant volume of a series: exactly that constant, upscaled
            value = float(frames[0, 0, 0, t])
            result[t] = max(value, 0.0) if magnitude else value
            bar.update(n)
            continue
        slices = np.moveaxis(seen(t), axis, 0)  # (n, h, w)
        for part in _batches(n, batch_size):
            lr = torch.from_numpy(np.ascontiguousarray(slices[part], dtype=np.float32))[:, None].to(device)
            lr = fit.apply(lr)
            sr = upscale_batch(generator, lr, tile, overlap, max_pixels, precision, self_ensemble)
            if consistency:
                sr = project_onto_input(sr, lr, scale)
            out = sign * fit.invert(sr[:, 0])
            result[t, part] = (out.clamp_min(0.0) if magnitude else out).cpu().numpy()
            bar.update(part.stop - part.start)
    bar.close()
    meta = dict(volume.meta, upscaled_by=scale, upscale_axis=axis)
    array = np.moveaxis(result, 1, axis + 1)  # (T, X', Y', Z')
    array = array[0] if volume.array.ndim == 3 else np.moveaxis(array, 0, -1)
    return Volume(array, resampled_affine(volume.affine, scale, axis), meta)
