"""Writing super-resolved results: NIfTI for volumes; ``.npy`` or PNG for 2D images (8-bit for
an 8-bit input, else 16-bit).

Every writer goes through a temporary file in the destination folder and an atomic rename, so
an interrupted run leaves either the complete output or none. A run killed outright (SIGKILL, a
power cut) cannot delete its temporary file: it stays beside the output as a hidden
``.NAME.<8 random characters>SUFFIX`` (e.g. ``.sr.nii.gz.k2j4h1x9.nii.gz``), and the next run
writing ``NAME`` deletes it (:func:`remove_leftovers`).

Before any work, :func:`check_resources` refuses a result that would not fit in memory (the
input and the upscaled volume are held as float32) or, for uncompressed outputs, on disk.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fagan import FaganError, __version__, atomic
from fagan.atomic import atomic_path
from fagan.data.io import ALIGNED, Volume, write_nifti

OUTPUT_SUFFIXES = (".nii", ".nii.gz", ".npy", ".png")

log = logging.getLogger(__name__)


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
        # samefile also sees through the other case of a name on a case-insensitive file system
        if any(_same(place, source) for place in (resolved, *resolved.parents)):
            raise FaganError(f"output {out} would overwrite the input {source}; choose another path")
    if out.is_dir():
        raise FaganError(f"output {out} is a directory; give a file name")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if not out.parent.exists():
        raise FaganError(f"output folder {out.parent} does not exist")
    return out


def _same(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file or folder (equal paths, or one file found both ways)."""
    return a == b or (a.exists() and b.exists() and os.path.samefile(a, b))


def check_output_shape(path: str | os.PathLike, shape: tuple[int, ...], axis: int = 2) -> None:
    """Refuse a ``.npy``/``.png`` output for an image that is not one 2D slice along ``axis``
    (called before any work on the input's shape, and by :func:`save_result` on the result's)."""
    kind = output_kind(path)
    if kind in (".npy", ".png") and (axis != 2 or len(shape) > 3 or len(shape) == 3 and shape[2] != 1):
        raise FaganError(
            f"{kind} output holds one 2D slice; this image has shape {tuple(shape)}: use .nii.gz"
        )


def png_bits(meta: dict) -> int:
    """The bit depth of a PNG output: 8 for an input stored as unsigned 8-bit integers (its
    viewers expect 0..255 and would show 16-bit values that small as black), else 16."""
    return 8 if meta.get("dtype") == "uint8" else 16


def check_png_range(path: str | os.PathLike, array: np.ndarray) -> None:
    """Refuse a 16-bit PNG output for an input whose values a PNG cannot hold (integers 0..65535):
    the result is rounded and clipped to that range, which is harmless only for such inputs."""
    if output_kind(path) != ".png" or array.size == 0:
        return
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 65535 or not np.array_equal(array, np.rint(array)):
        raise FaganError(
            f"16-bit PNG output holds integers 0..65535, but this input's values ({low:.4g} to {high:.4g}) "
            "are not such integers; write .npy or .nii.gz"
        )


def save_result(path: str | os.PathLike, volume: Volume, overwrite: bool = False) -> Path:
    """Write ``volume``: NIfTI (float32, its affine), or a 2D image as ``.npy`` or PNG, whose
    values are rounded and clipped to its bit depth (:func:`png_bits`)."""
    path = Path(path)
    kind = output_kind(path)
    if kind in (".nii", ".nii.gz"):
        meta = volume.meta
        world = meta.get("qform_world")  # a NIfTI input's own qform, as a map from the affine's world
        write_nifti(
            path,
            volume.array,
            volume.affine,
            overwrite=overwrite,
            xform_code=meta.get("xform_code", ALIGNED),
            qform=None if world is None else np.asarray(world) @ volume.affine,
            qform_code=meta.get("qform_code"),
            display_range=meta.get("display_range"),
            description=_provenance(meta),
            frame_interval=meta.get("frame_interval"),
            time_unit=meta.get("time_unit"),
            intent=output_intent(meta, volume.array.ndim),
            aux_file=meta.get("aux_file", b""),
            slice_info=_slice_info(meta),
        )
        return path
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    check_output_shape(path, volume.array.shape)
    image = volume.array.reshape(volume.array.shape[:2]).astype(np.float32)
    with atomic_path(path, suffix=kind) as tmp:
        if kind == ".npy":
            with open(tmp, "wb") as f:  # a file object, so numpy adds no second ".npy"
                np.save(f, image, allow_pickle=False)
        else:
            from PIL import Image

            # 2D images are read as (rows, columns, 1), so the array is the picture as it is.
            dtype = np.uint8 if png_bits(volume.meta) == 8 else np.uint16
            pixels = np.clip(np.rint(image), 0, np.iinfo(dtype).max).astype(dtype)
            Image.fromarray(pixels).save(tmp, format="PNG")
    return path


#: NIfTI intents an upscaled image keeps: t and z statistics, estimates, dimensionless values and
#: TOPUP's field map have no bounds that upscaling could overshoot; a time series (2001) stays one
#: while the output keeps its volumes.
KEPT_INTENTS = {3: "t test", 5: "z score", 1001: "estimate", 1011: "dimensionless", 2018: "FSL TOPUP field"}


def output_intent(meta: dict, ndim: int) -> tuple | None:
    """The input's NIfTI intent (``meta["intent"]``: code, p1-p3, name) if its output keeps it,
    else None: a bounded statistic (a p value, a correlation) upscaled can leave its range, and a
    single volume of a time series is not one."""
    intent = meta.get("intent")
    if intent is None or not (intent[0] in KEPT_INTENTS or intent[0] == 2001 and ndim == 4):
        return None
    return intent


def _slice_info(meta: dict) -> dict | None:
    """A NIfTI input's dim_info and slice timing fields, for its output: which voxel axes were the
    frequency, phase and slice axes stays true of the output, and the slice timing does while the
    slice axis is the one the volume was cut along (whose slices are upscaled, not resampled)."""
    info = meta.get("slice_info")
    if not info:
        return None
    slice_axis = ((int(info["dim_info"]) >> 4) & 3) - 1  # NIfTI counts the axes from 1; 0: unknown
    if slice_axis == meta.get("upscale_axis", 2):
        return dict(info)
    return {"dim_info": info["dim_info"]}


def _provenance(meta: dict) -> str:
    """What the NIfTI header's descrip says of an output: what made it, from which file."""
    if "upscaled_by" not in meta:
        return ""
    source = Path(str(meta.get("path", ""))).name
    return f"fagan {__version__} x{meta['upscaled_by']} super-resolution of {source}"


def leftovers(path: str | os.PathLike) -> list[Path]:
    """Temporary files that killed runs writing ``path`` left beside it (see the module docstring)."""
    path = Path(path)
    return atomic.leftovers(path.parent, re.escape(path.name), output_kind(path))


def remove_leftovers(path: str | os.PathLike, keep: Sequence[Path] = ()) -> list[Path]:
    """Delete the temporary files killed runs writing ``path`` left; returns what was deleted.

    Files in ``keep`` (the run's inputs) are never deleted, even when named like leftovers.
    Two runs writing the same output at once are not supported: the other one's temporary file
    would be deleted and its final rename would fail.
    """
    removed = []
    kept = {p.resolve() for p in keep}
    for leftover in leftovers(path):
        if leftover.resolve() in kept:
            continue
        try:
            leftover.unlink()
        except FileNotFoundError:
            continue
        removed.append(leftover)
        log.info("removed %s, left by an interrupted run", leftover)
    return removed


def available_memory() -> int | None:
    """Bytes this process can still allocate: the smaller of the system's available memory
    (MemAvailable) and what the address-space limit leaves; None when unknown."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            mapped = 0
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmSize:"):
                    mapped = int(line.split()[1]) * 1024
            found.append(max(soft - mapped, 0))
    except (ImportError, OSError, ValueError):
        pass
    return min(found) if found else None


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check_resources(
    shape: tuple[int, ...],
    scale: int,
    axis: int,
    output: str | os.PathLike,
    memory: int | None = None,
    several_volumes: bool = False,
) -> int:
    """Refuse, before any work, upscaling a ``shape`` volume (``(X, Y, Z)``, or ``(X, Y, Z, T)``
    for T volumes) ``scale`` times in the plane across ``axis`` when the input and the result
    (float32) exceed ``memory`` bytes (default: :func:`available_memory`), or when an
    uncompressed ``output`` would not fit on its disk.

    Returns the bytes the result needs. Slices go through the network in batches and tiles, so
    the volumes themselves are what must fit. The message suggests ``--frame`` for an input that
    is 4D or may be (``several_volumes``: a DICOM series whose images may be several volumes).
    """
    voxels = 1
    for n in shape:
        voxels *= int(n)
    in_bytes = 4 * voxels
    out_bytes = in_bytes * scale * scale
    out_shape = "x".join(str(n * (1 if i in (axis, 3) else scale)) for i, n in enumerate(shape))
    memory = available_memory() if memory is None else memory
    if memory is not None and in_bytes + out_bytes > memory:
        way = "crop the volume"
        if several_volumes:
            way = "if it holds several volumes, upscale one at a time (--frame N); else crop it"
        elif len(shape) == 4:
            way = "upscale one volume at a time (--frame N)"
        raise FaganError(
            f"upscaling {'x'.join(map(str, shape))} voxels x{scale} gives {out_shape} = {_gb(out_bytes)} of "
            f"float32; with the input that needs {_gb(in_bytes + out_bytes)} of memory but "
            f"{_gb(memory)} is available - {way}, or upscale it in parts and join them"
        )
    output = Path(output)
    if output_kind(output) != ".nii.gz":  # compressed sizes cannot be known in advance
        folder = output.parent if str(output.parent) else Path(".")
        free = shutil.disk_usage(folder).free + (output.stat().st_size if output.is_file() else 0)
        if out_bytes > free:
            raise FaganError(
                f"the {out_shape} result needs {_gb(out_bytes)} on disk but {folder} has {_gb(free)} "
                "free; free some space or write a compressed .nii.gz"
            )
    return out_bytes
