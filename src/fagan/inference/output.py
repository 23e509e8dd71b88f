"""Writing super-resolved results: NIfTI for volumes; ``.npy`` or 16-bit PNG for 2D images.

Every writer goes through a temporary file in the destination folder and an atomic rename, so
an interrupted run leaves either the complete output or none.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fagan import FaganError
from fagan.atomic import atomic_path
from fagan.data.io import Volume, write_nifti

OUTPUT_SUFFIXES = (".nii", ".nii.gz", ".npy", ".png")


def output_kind(path: str | os.PathLike) -> str:
    name = Path(path).name.lower()
    for suffix in (".nii.gz", ".nii", ".npy", ".png"):
        if name.endswith(suffix):
            return suffix
    raise FaganError(f"{path}: output must end in {', '.join(OUTPUT_SUFFIXES)}")


def check_output(path: str | os.PathLike, inputs: list[Path], overwrite: bool) -> Path:
    """Validate an output path before any work: known suffix, not an input, no silent overwrite."""
    out = Path(path)
    output_kind(out)
    resolved = out.resolve()
    for source in inputs:
        source = source.resolve()
        if resolved == source or source in resolved.parents:
            raise FaganError(f"output {out} would overwrite the input {source}; choose another path")
    if out.is_dir():
        raise FaganError(f"output {out} is a directory; give a file name")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if not out.parent.exists():
        raise FaganError(f"output folder {out.parent} does not exist")
    return out


def save_result(path: str | os.PathLike, volume: Volume, overwrite: bool = False) -> Path:
    """Write ``volume``: NIfTI (float32, its affine), or a 2D image as ``.npy``/16-bit PNG."""
    path = Path(path)
    kind = output_kind(path)
    if kind in (".nii", ".nii.gz"):
        write_nifti(path, volume.array, volume.affine, overwrite=overwrite)
        return path
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    if volume.array.ndim == 3 and volume.array.shape[2] != 1:
        raise FaganError(
            f"{kind} output holds one 2D slice; this result has shape {volume.array.shape}: use .nii.gz"
        )
    image = volume.array.reshape(volume.array.shape[:2]).astype(np.float32)
    with atomic_path(path, suffix=kind) as tmp:
        if kind == ".npy":
            with open(tmp, "wb") as f:  # a file object, so numpy adds no second ".npy"
                np.save(f, image, allow_pickle=False)
        else:
            from PIL import Image

            # 2D images are read as (rows, columns, 1), so the array is the picture as it is.
            Image.fromarray(np.clip(np.rint(image), 0, 65535).astype(np.uint16)).save(tmp, format="PNG")
    return path
