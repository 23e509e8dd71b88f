"""Voxel geometry of in-plane resampling.

Upscaling the two axes other than ``axis`` by ``s`` keeps the physical field of view: output
voxel ``i'`` along a scaled axis has its centre at input index ``(i' + 0.5) / s - 0.5`` (the
``align_corners=False`` convention of bicubic interpolation), so the output's voxel size is the
input's divided by ``s``, the orientation is unchanged, and the origin moves by
``-(s - 1) / (2 s)`` input voxels along each scaled axis.
"""

from __future__ import annotations

import numpy as np


def in_plane_axes(axis: int) -> tuple[int, int]:
    """The two array axes a 2D slice spans when volumes are cut along ``axis``."""
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, not {axis}")
    a, b = (i for i in range(3) if i != axis)
    return a, b


def resampled_affine(affine: np.ndarray, factor: float, axis: int) -> np.ndarray:
    """The affine of a volume whose in-plane axes are resampled by ``factor`` (>1 upsamples).

    ``affine``: (4, 4) voxel index -> world (mm). Returns a new (4, 4) array.
    """
    index_map = np.eye(4)
    for i in in_plane_axes(axis):
        index_map[i, i] = 1.0 / factor
        index_map[i, 3] = 0.5 / factor - 0.5
    return np.asarray(affine, dtype=np.float64) @ index_map


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """The length (mm) of a voxel's step along each array axis."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def coarse_in_plane_axis(
    affine: np.ndarray, shape: tuple[int, ...], axis: int, ratio: float = 1.5
) -> int | None:
    """The in-plane axis (for slices cut along ``axis``) whose voxels are more than ``ratio``
    times as long as those along ``axis``, the longest such, or None.

    A scan is acquired as thin planes with thick voxels across them; such an axis in the plane
    means the planes being upscaled are not the acquired ones. A 2D image (``shape[2] == 1``) has
    none."""
    if len(shape) < 3 or shape[2] == 1:
        return None
    sizes = voxel_sizes(affine)
    coarse = max(in_plane_axes(axis), key=lambda i: sizes[i])
    return coarse if sizes[coarse] > ratio * sizes[axis] else None
