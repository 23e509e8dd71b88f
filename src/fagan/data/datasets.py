"""2D slice datasets over MRI volumes: (LR, HR) pairs for training and evaluation."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fagan import FaganError
from fagan.data.degrade import central_spectrum, check_method, check_scale, crop_to_multiple, degrade
from fagan.data.io import ALL_FRAMES, Volume, each_volume, read_volume
from fagan.data.normalize import IntensityScaling, fit_scaling

#: A voxel counts as foreground when its normalised intensity exceeds this.
FOREGROUND_THRESHOLD = 0.05
#: Patch positions tried before settling for the one with the most foreground.
PATCH_RETRIES = 10
#: How ``zoom_range`` resizes a training slice (see :class:`SliceDataset`).
ZOOM_METHODS = ("bicubic", "kspace")
#: Knots in (0, 1] of the random intensity curve of ``contrast_prob``.
CONTRAST_KNOTS = 4
#: Where those knots lie (see :class:`SliceDataset`).
CONTRAST_KNOT_PLACEMENTS = ("even", "tissue")
#: Foreground voxels per volume that the tissue clustering of ``contrast_knots="tissue"`` uses.
TISSUE_SAMPLE = 200_000


class NoSlicesError(FaganError):
    """No slice of a dataset's volumes passes the size and foreground tests."""


class SlicePair(NamedTuple):
    """One training or evaluation sample.

    ``lr``: (1, h, w) float32; ``hr``: (1, s*h, s*w) float32, both on the normalised scale;
    ``volume``: index of the source volume in the dataset; ``slice``: slice index along the axis
    (the axis is ``dataset.entries[i].axis``).
    """

    lr: torch.Tensor
    hr: torch.Tensor
    volume: int
    slice: int


class SliceEntry(NamedTuple):
    """A kept slice: volume index, axis of the volume it is cut along, index along that axis."""

    volume: int
    axis: int
    index: int


class SliceDataset(Dataset):
    """(LR, HR) slice pairs cut from a list of volumes along chosen axes.

    Each volume is read (paths) or taken as is (:class:`~fagan.data.io.Volume`), normalised with
    :func:`~fagan.data.normalize.fit_scaling` (kept in ``self.scalings`` so outputs can be mapped
    back with ``scalings[volume].invert``), and held in memory as a float32 tensor. Every volume
    of a 4D file (a cine or diffusion series) is a volume here, normalised on its own as
    ``fagan upscale`` does; ``self.files[v]`` is the index in ``volumes`` of volume ``v``'s file,
    and ``max_slices_per_volume`` counts per file.

    Slices whose foreground fraction (normalised intensity > 0.05) is below ``min_foreground``
    are skipped, as are slices smaller than ``patch_size`` (or than ``scale`` without patches)
    or with a side shorter than ``min_side`` (validation sets it to SSIM's window).
    ``max_slices_per_volume`` keeps that many evenly spaced slices of each volume file.

    Training (``patch_size`` set, the HR patch side, divisible by ``scale``): intensities are
    clipped to [0, 1]; each item is a random HR patch (up to 10 positions, alternately uniform and
    centred on a foreground voxel, are tried to find one with at least ``min_foreground``
    foreground, else the fullest is used), with random flips
    and 90-degree rotations if ``augment``. The randomness depends only on (seed, epoch, index):
    call :meth:`set_epoch` each epoch.

    Evaluation (``patch_size=None``): each item is the full slice, HR cropped at the end to a
    multiple of ``scale``, in a fixed order, intensities not clipped; ``augment`` is refused.

    ``zoom_range=(lo, hi)`` (training only) first resizes the whole slice by a random factor in
    that range (antialiased bicubic), so a model trained on smooth 1 mm templates also sees the
    coarser, sharper-per-pixel images of 2 mm scans; factors that would make the slice smaller
    than the patch are skipped. ``zoom_method="kspace"`` shrinks it instead as a scanner acquires
    a coarser matrix over the same field of view: only the central block of its 2D Fourier
    transform is kept, and the magnitude of the inverse transform is the new slice. The slice
    then has the truncation (Gibbs) ringing next to sharp edges that every real scan has at its
    own resolution and the smooth, resampled templates lack; values may overshoot 1 there, as
    they do in real scans normalised the same way. It needs ``zoom_range`` within (0, 1].

    ``noise_range=(lo, hi)`` (training only) adds Rician noise of a level drawn uniformly from
    that range (standard deviation of each of the two Gaussian channels, in normalised units) to
    the HR patch, after flips, as a magnitude image of a real scan has: the patch becomes
    ``|hr + sigma * (n1 + i n2)|``. Both the LR input and the target are made from the noisy
    patch, so the network learns what the test protocol asks of it on real scans: to predict
    the noisy HR image's expectation from an LR image whose noise was partly averaged away,
    instead of sharpening that noise as a model trained only on noise-free templates does.

    ``contrast_prob=p`` (training only) sends a fraction ``p`` of the HR patches, before the
    noise, through a random piecewise-linear intensity curve: 0 stays 0 (air stays dark) and the
    curve takes independent uniform values at ``CONTRAST_KNOTS`` evenly spaced intensities, scaled
    so that its highest is 1. Tissues keep their boundaries but change their order and contrast,
    as between T1, T2 and proton-density weighting, so a model trained on T1 templates also sees
    edges of other polarities and strengths. ``contrast_knots="tissue"`` puts all but the last
    knot at the volume's tissue intensities instead (the centres of ``CONTRAST_KNOTS - 1``
    clusters of its foreground intensities, by k-means) and the last at 1. Each tissue then gets
    a random intensity of its own, and a voxel that mixes two tissues adjacent in intensity maps
    between their new intensities, as in a scan of the new contrast; with evenly spaced knots a
    knot can fall between two tissues and give their boundary a band of a third intensity.

    ``gain_range=(lo, hi)`` and ``offset_range=(lo, hi)`` (training only) map each HR patch, after
    the noise, through ``x -> g x + b`` with ``g`` drawn log-uniformly from ``gain_range`` and
    ``b`` uniformly from ``offset_range``, and nothing is clipped. At test time the network's
    input is normalised by percentiles of the *LR* volume, not of the HR volume that training
    normalises by: blurring lowers the bright percentile, and averaging away a noisy background
    raises the dark one, so a real LR scan reaches the network brighter and with its background
    below 0 (``docs/model-choices.md``, "Intensity jitter"). These ranges let training see such
    inputs, so that the network's output depends less on where the normalisation lands.

    The LR input is always ``degrade(hr, scale, degradation)``.
    """

    def __init__(
        self,
        volumes: Sequence[str | os.PathLike | Volume],
        scale: int,
        *,
        axes: Sequence[int] = (2,),
        patch_size: int | None = None,
        augment: bool = False,
        seed: int = 0,
        degradation: str = "bicubic",
        min_foreground: float = 0.05,
        max_slices_per_volume: int | None = None,
        p_low: float = 0.5,
        p_high: float = 99.5,
        zoom_range: tuple[float, float] | None = None,
        zoom_method: str = "bicubic",
        noise_range: tuple[float, float] | None = None,
        contrast_prob: float = 0.0,
        contrast_knots: str = "even",
        gain_range: tuple[float, float] | None = None,
        offset_range: tuple[float, float] | None = None,
        min_side: int = 1,
    ) -> None:
        self.scale = check_scale(scale)
        self.degradation = check_method(degradation)
        if patch_size is not None and (patch_size <= 0 or patch_size % scale):
            raise FaganError(f"patch_size must be a positive multiple of scale {scale}, got {patch_size}")
        if augment and patch_size is None:
            raise FaganError("augment needs patch_size: set a patch size for training, or augment=False")
        if not 0.0 <= min_foreground <= 1.0:
            raise FaganError(f"min_foreground must lie in [0, 1], got {min_foreground}")
        if max_slices_per_volume is not None and max_slices_per_volume < 1:
            raise FaganError(f"max_slices_per_volume must be at least 1, got {max_slices_per_volume}")
        if not axes or any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
            raise FaganError(f"axes must be distinct values among 0, 1, 2, got {tuple(axes)}")
        if len(volumes) == 0:
            raise FaganError("no volumes given; pass at least one path or Volume")
        self.zoom_range = _augmentation_range("zoom_range", zoom_range, patch_size)
        if zoom_method not in ZOOM_METHODS:
            raise FaganError(f"zoom_method must be one of {', '.join(ZOOM_METHODS)}, got {zoom_method!r}")
        if zoom_method == "kspace" and self.zoom_range is None and patch_size is not None:
            raise FaganError("zoom_method 'kspace' needs zoom_range: set the shrink factors, e.g. [0.5, 1]")
        if zoom_method == "kspace" and self.zoom_range is not None and self.zoom_range[1] > 1.0:
            raise FaganError(f"zoom_method 'kspace' only shrinks: zoom_range needs (0, 1], not {zoom_range}")
        self.zoom_method = zoom_method
        self.noise_range = _augmentation_range("noise_range", noise_range, patch_size, lowest="zero")
        if not 0.0 <= contrast_prob <= 1.0:
            raise FaganError(f"contrast_prob must lie in [0, 1], got {contrast_prob}")
        if contrast_prob and patch_size is None:
            raise FaganError("contrast_prob needs patch_size: it is a training augmentation")
        self.contrast_prob = float(contrast_prob)
        if contrast_knots not in CONTRAST_KNOT_PLACEMENTS:
            raise FaganError(
                f"contrast_knots must be one of {', '.join(CONTRAST_KNOT_PLACEMENTS)}, got {contrast_knots!r}"
            )
        self.contrast_knots = contrast_knots
        self.gain_range = _augmentation_range("gain_range", gain_range, patch_size)
        self.offset_range = _augmentation_range("offset_range", offset_range, patch_size, lowest="any")
        self.patch_size = patch_size
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self.min_foreground = float(min_foreground)
        self.axes = tuple(int(a) for a in axes)
        self.min_side = int(min_side)

        self.names: list[str] = []
        self.files: list[int] = []  # the file (index into ``volumes``) each volume came from
        self.scalings: list[IntensityScaling] = []
        self.volumes: list[torch.Tensor] = []  # each (X, Y, Z) float32, normalised
        self.knots: list[np.ndarray] = []  # each volume's knots of the contrast curve
        self.entries: list[SliceEntry] = []
        for f, item in enumerate(volumes):
            read = item if isinstance(item, Volume) else read_volume(item, frame=ALL_FRAMES)
            kept: list[SliceEntry] = []
            for volume in each_volume(read):
                v = len(self.volumes)
                name = str(volume.meta.get("path", f"volume {f}"))
                frame = volume.meta.get("frame") if read.array.ndim == 4 else None
                name = name if frame is None else f"{name} (volume {frame})"
                self.names.append(name)
                self.files.append(f)
                try:
                    scaling = fit_scaling(volume.array, p_low, p_high)
                except FaganError as exc:
                    raise FaganError(f"{name}: {exc}") from None
                data = torch.from_numpy(np.ascontiguousarray(volume.array, dtype=np.float32))
                data = scaling.apply(data)
                if patch_size is not None:
                    data = data.clamp_(0.0, 1.0)
                self.scalings.append(scaling)
                self.volumes.append(data)
                tissue = self.contrast_prob and contrast_knots == "tissue"
                self.knots.append(tissue_knots(data) if tissue else even_knots())
                kept.extend(self._keep(v, data))
            if max_slices_per_volume is not None and len(kept) > max_slices_per_volume:
                picks = np.linspace(0, len(kept) - 1, max_slices_per_volume).round().astype(int)
                kept = [kept[i] for i in picks]
            self.entries.extend(kept)
        if not self.volumes:  # (files are refused as read; this is 4D volumes given in memory)
            raise NoSlicesError(f"every volume of the {len(volumes)} 4D volume(s) given is constant")
        if not self.entries:
            planes = [
                tuple(n for a, n in enumerate(data.shape) if a != axis)
                for data in self.volumes
                for axis in self.axes
            ]
            largest = max(planes, key=min)
            need = max(patch_size or scale, min_side)
            raise NoSlicesError(
                f"no slice of the {len(volumes)} volume(s) is large enough and at least "
                f"{min_foreground:.0%} foreground (slices need sides of {need} pixels; the largest "
                f"is {largest[0]}x{largest[1]}); lower min_foreground or patch_size"
            )

    def _keep(self, v: int, data: torch.Tensor) -> list[SliceEntry]:
        """The entries of volume ``v`` that pass the size and foreground tests."""
        need = max(self.patch_size or self.scale, self.min_side)
        kept: list[SliceEntry] = []
        foreground = data > FOREGROUND_THRESHOLD
        for axis in self.axes:
            plane = [n for a, n in enumerate(data.shape) if a != axis]
            if min(plane) < need:
                continue
            others = tuple(a for a in range(3) if a != axis)
            fraction = foreground.float().mean(dim=others)
            indices = torch.nonzero(fraction >= self.min_foreground).flatten().tolist()
            kept.extend(SliceEntry(v, axis, i) for i in indices)
        return kept

    def set_epoch(self, epoch: int) -> None:
        """Select the random patches and augmentations of ``epoch`` (training only)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.entries)

    def slice_image(self, index: int) -> torch.Tensor:
        """The full normalised 2D slice (H, W) of entry ``index``."""
        entry = self.entries[index]
        return self.volumes[entry.volume].select(entry.axis, entry.index)

    def __getitem__(self, index: int) -> SlicePair:
        if not -len(self.entries) <= index < len(self.entries):
            raise IndexError(f"index {index} out of range for {len(self.entries)} slices")
        index %= len(self.entries)
        entry = self.entries[index]
        image = self.slice_image(index)
        if self.patch_size is None:
            hr = crop_to_multiple(image, self.scale)
        else:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if self.zoom_range is not None:
                image = self._zoom(image, rng)
            hr = self._patch(image, rng)
            if self.augment:
                hr = _augment(hr, rng)
            if self.contrast_prob and rng.random() < self.contrast_prob:
                hr = _random_contrast(hr, self.knots[entry.volume], rng)
            if self.noise_range is not None:
                hr = _rician(hr, float(rng.uniform(*self.noise_range)), rng)
            if self.gain_range is not None:
                hr = hr * float(np.exp(rng.uniform(*np.log(self.gain_range))))
            if self.offset_range is not None:
                hr = hr + float(rng.uniform(*self.offset_range))
        hr = hr.contiguous()[None]  # (1, H, W)
        lr = degrade(hr[None], self.scale, self.degradation)[0]
        return SlicePair(lr, hr, entry.volume, entry.index)

    def _zoom(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """``image`` (H, W) resized by a random factor from ``zoom_range`` (``zoom_method``)."""
        assert self.zoom_range is not None and self.patch_size is not None
        factor = float(rng.uniform(*self.zoom_range))
        size = [round(n * factor) for n in image.shape]
        if factor == 1.0 or min(size) < self.patch_size:
            return image
        if self.zoom_method == "kspace":
            return _kspace_shrink(image, size)
        resized = F.interpolate(
            image[None, None], size=size, mode="bicubic", antialias=True, align_corners=False
        )
        return resized[0, 0].clamp_(0.0, 1.0)

    def _patch(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """A random (P, P) patch of ``image`` with enough foreground, if one is found quickly.

        Tries alternate between a uniformly placed patch and one centred on a random foreground
        voxel; after PATCH_RETRIES tries the patch with the most foreground is used.
        """
        size = self.patch_size
        assert size is not None
        height, width = image.shape
        mask = image > FOREGROUND_THRESHOLD
        foreground: torch.Tensor | None = None
        best, best_fraction = image[:size, :size], -1.0
        for attempt in range(PATCH_RETRIES):
            top = int(rng.integers(0, height - size + 1))
            left = int(rng.integers(0, width - size + 1))
            if attempt % 2 == 1:
                if foreground is None:
                    foreground = torch.nonzero(mask)
                if len(foreground):
                    y, x = foreground[int(rng.integers(len(foreground)))].tolist()
                    top = min(max(y - size // 2, 0), height - size)
                    left = min(max(x - size // 2, 0), width - size)
            fraction = float(mask[top : top + size, left : left + size].float().mean())
            if fraction > best_fraction:
                best, best_fraction = image[top : top + size, left : left + size], fraction
            if fraction >= self.min_foreground:
                break
        return best


def _augmentation_range(
    name: str, value: tuple[float, float] | None, patch_size: int | None, lowest: str = "positive"
) -> tuple[float, float] | None:
    """``value`` as floats, checked: a training augmentation needs ``patch_size``, and its range
    must be finite with ``lo <= hi`` and ``0 < lo`` (``lowest="positive"``), ``0 <= lo``
    (``"zero"``) or any ``lo`` (``"any"``); FaganError otherwise."""
    if value is None:
        return None
    if patch_size is None:
        raise FaganError(f"{name} needs patch_size: it is a training augmentation")
    low_ok = {"positive": 0.0 < value[0], "zero": 0.0 <= value[0], "any": True}[lowest]
    if not (np.isfinite(value).all() and low_ok and value[0] <= value[1]):
        bound = {"positive": "0 < lo <= hi", "zero": "0 <= lo <= hi", "any": "lo <= hi"}[lowest]
        raise FaganError(f"{name} must satisfy {bound} (finite), got {tuple(value)}")
    return float(value[0]), float(value[1])


def _rician(patch: torch.Tensor, sigma: float, rng: np.random.Generator) -> torch.Tensor:
    """``|patch + sigma * (n1 + i n2)|`` with n1, n2 standard normal: the magnitude of a noisy
    complex MR signal (Rician in tissue, Rayleigh in the background)."""
    if sigma == 0.0:
        return patch
    n1, n2 = rng.standard_normal((2, *patch.shape), dtype=np.float32) * sigma
    return torch.hypot(patch + torch.from_numpy(n1), torch.from_numpy(n2))


def _kspace_shrink(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``image`` (H, W) acquired at ``size`` (h <= H, w <= W) pixels over the same field of view:
    the central (h, w) block of its centred spectrum, transformed back, in magnitude."""
    (height, width), (h, w) = image.shape, size
    block = torch.fft.ifftshift(central_spectrum(image, h, w))
    return (torch.fft.ifft2(block).abs() * (h * w / (height * width))).to(image.dtype)


def even_knots() -> np.ndarray:
    """``CONTRAST_KNOTS`` evenly spaced knots in (0, 1]."""
    return np.linspace(0.0, 1.0, CONTRAST_KNOTS + 1)[1:]


def tissue_knots(data: torch.Tensor) -> np.ndarray:
    """Knots at the tissue intensities of a normalised volume: the sorted centres of
    ``CONTRAST_KNOTS - 1`` k-means clusters of its foreground intensities (at most
    ``TISSUE_SAMPLE`` of them, evenly picked), then 1. Centres that coincide or fall outside
    (0, 1) are dropped, so a volume with fewer distinct tissues gets fewer knots; a volume without
    enough foreground gets :func:`even_knots`."""
    from scipy.cluster.vq import kmeans2  # here: fagan upscale and demo import this module

    values = data[data > FOREGROUND_THRESHOLD].numpy().astype(np.float64)
    if values.size < CONTRAST_KNOTS or values.min() == values.max():
        return even_knots()
    values = values[:: -(-values.size // TISSUE_SAMPLE)]  # every k-th, k rounded up
    classes = CONTRAST_KNOTS - 1
    start = np.quantile(values, (np.arange(classes) + 0.5) / classes)
    with warnings.catch_warnings():  # an empty cluster keeps its start; the knots are deduplicated
        warnings.simplefilter("ignore")
        centres, _ = kmeans2(values, start, minit="matrix", iter=30)
    centres = np.unique(np.round(centres, 4))
    return np.append(centres[(centres > 0.0) & (centres < 1.0)], 1.0)


def _random_contrast(patch: torch.Tensor, knots: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """``patch`` (values in [0, 1]) through a random piecewise-linear curve: f(0) = 0, uniform
    values at ``knots`` (increasing, in (0, 1]), scaled so that the largest is 1. Values above the
    last knot (the Gibbs overshoot of a k-space zoom) map as it does."""
    values = np.concatenate([[0.0], rng.uniform(0.0, 1.0, len(knots))])
    values /= max(values.max(), 1e-6)
    return torch.from_numpy(np.interp(patch.numpy(), np.append(0.0, knots), values).astype(np.float32))


def _augment(patch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random vertical/horizontal flips and a rotation by a multiple of 90 degrees (square P, P)."""
    flip_v, flip_h, turns = bool(rng.integers(2)), bool(rng.integers(2)), int(rng.integers(4))
    if flip_v:
        patch = patch.flip(0)
    if flip_h:
        patch = patch.flip(1)
    return torch.rot90(patch, turns, dims=(0, 1)) if turns else patch


__all__ = [
    "FOREGROUND_THRESHOLD",
    "NoSlicesError",
    "SliceDataset",
    "SliceEntry",
    "SlicePair",
]
