"""Reading MRI volumes into ``(float32 array, affine, metadata)`` and writing NIfTI.

Every reader returns a :class:`Volume` whose ``array`` is 3D float32 ``(X, Y, Z)`` (4D
``(X, Y, Z, T)`` for every volume of a 4D input, read with ``frame=ALL_FRAMES``) and whose
``affine`` maps voxel indices ``(i, j, k, 1)`` to RAS+ millimetres (nibabel's convention).

Layouts, per format:

* NIfTI (``.nii``, ``.nii.gz``): the array as nibabel gives it, scaling applied, ``Z`` the third
  axis. A 4D file needs ``frame``: the index along the fourth axis, or ``"all"``.
* DICOM (a file, a multi-frame file, or a directory holding one series): ``array[i, j, k]`` is
  column ``i`` and row ``j`` of slice ``k`` (so each slice is ``pixel_array.T``), slices sorted by
  their position along the slice normal, rescale slope/intercept applied. The affine is built
  from ImagePositionPatient / ImageOrientationPatient / PixelSpacing in DICOM's LPS space and
  converted to RAS by negating the first two rows, as nibabel does. Files without plane geometry
  get a diagonal affine from the spacings and ``meta["geometry"] == "missing"``. Several images
  at each slice position (time points, echoes) make a 4D series: choose one with ``frame``, or
  read them all with ``frame="all"``.
* fastMRI HDF5 (``.h5``): ``reconstruction_rss`` (multi-coil) or ``reconstruction_esc``
  (single-coil), ``(slices, rows, cols)`` on disk, laid out as ``array[i, j, k] =
  recon[k, j, i]`` like DICOM. fastMRI stores no patient orientation, so the affine is diagonal
  with the voxel sizes of the ISMRMRD header's reconstruction space (1 mm if absent).
* 2D images (``.npy``, 8- or 16-bit grayscale ``.png``): ``(H, W, 1)`` with ``array[r, c, 0] =
  image[r, c]`` and an identity affine.

Bad input raises :class:`fagan.FaganError` with a one-line message saying what to do. Sizes a
header claims are checked against :data:`MAX_VOXELS` and against what the file can hold before
any pixel data is allocated; any other exception a decoding library raises on a damaged file is
turned into a FaganError too (``MemoryError`` excepted), so callers need to catch only
``ValueError``. ``tests/data/test_fuzz_readers.py`` fuzzes these guarantees.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fagan import FaganError
from fagan.atomic import atomic_path

SUPPORTED_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".dcm", ".h5", ".hdf5", ".npy", ".png")

#: Volumes (or frames) with more voxels than this are refused before any data is allocated.
MAX_VOXELS = 2**30

#: Deflate expands data at most about 1032-fold, so a gzip file of n bytes holds at most this many
#: times n bytes; a header claiming more is lying (checked before allocating the image).
_MAX_DEFLATE_RATIO = 1032

#: ``frame`` value that reads every volume of a 4D input: the array is then ``(X, Y, Z, T)``.
ALL_FRAMES = "all"

#: NIfTI xform codes: the affine maps to the scanner's coordinates, or to another (aligned) space.
SCANNER, ALIGNED = 1, 2

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"


class Volume(NamedTuple):
    """A volume read from disk.

    ``array``: float32 ``(X, Y, Z)``; ``Z`` is the slice axis for NIfTI and DICOM series, and 2D
    images are ``(H, W, 1)``. A 4D input read with ``frame=ALL_FRAMES`` is ``(X, Y, Z, T)``, its
    ``T`` volumes (time points, diffusion directions, echoes) in order. ``affine``: ``(4, 4)``
    float64 mapping voxel index to RAS+ mm.
    ``meta``: format, path, original dtype, voxel size and format-specific details.
    """

    array: np.ndarray
    affine: np.ndarray
    meta: dict


# ----------------------------------------------------------------------------------------------
# Dispatch


def volume_stem(name: str) -> str:
    """A volume file's name without its format suffix (``t1.nii.gz`` -> ``t1``); any other name
    as it is."""
    lower = name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_volume(path: str | os.PathLike, frame: int | str | None = None) -> Volume:
    """Read a NIfTI, DICOM (file or series directory), fastMRI HDF5, .npy or PNG volume.

    ``frame`` picks one 3D volume of a 4D input (NIfTI time series, DICOM series with several
    images per position); it must be left as ``None`` (or 0) for 3D input. ``ALL_FRAMES``
    (``"all"``) reads every volume of a 4D input into an ``(X, Y, Z, T)`` array, and a 3D input as
    it is; ``meta["frame_interval"]`` is then the time between volumes in ``meta["time_unit"]``
    (a NIfTI's pixdim[4] and time unit as they are; a DICOM series' seconds from its acquisition
    times, None where they do not give it).
    Returns a :class:`Volume` with a finite, non-constant float32 array (single volumes of a 4D
    one may be constant).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    whole = isinstance(frame, (int, np.integer)) and not isinstance(frame, bool) and frame >= 0
    if frame is not None and frame != ALL_FRAMES and not whole:
        raise FaganError(f"frame must be a non-negative integer or {ALL_FRAMES!r}, got {frame!r}")
    reader = _reader_for(path)
    try:
        array, affine, meta = reader(path, frame)
    except (FaganError, FileNotFoundError, MemoryError):
        raise
    except Exception as exc:  # a decoding library's own error on a damaged file (pydicom, e.g.,
        # decodes elements lazily and raises on a damaged one only when it is used)
        kind = _KINDS.get(volume_format(path) or "", "image")
        raise _corrupt(path, kind, exc) from exc
    return _finish(path, array, affine, meta, frame)


#: A volume of at most this many distinct integer values is a label map (a segmentation), not an
#: image: an MR image holds hundreds.
LABEL_VALUES = 16


def label_values(array: np.ndarray) -> np.ndarray | None:
    """The values of ``array`` if it looks like a label map (at most :data:`LABEL_VALUES` distinct
    integers, in a volume large enough to hold many more), else None. A sample of planes along
    the first axis is looked at, so a large volume costs little."""
    if array.size < 64 * LABEL_VALUES:
        return None
    values = np.unique(array[:: max(1, array.shape[0] // 64)])
    if len(values) <= LABEL_VALUES and np.array_equal(values, np.round(values)):
        return values
    return None


def is_constant(array: np.ndarray) -> bool:
    """Whether every value of (a non-empty) ``array`` is the same."""
    return float(array.min()) == float(array.max())


def each_volume(volume: Volume) -> list[Volume]:
    """The 3D volumes of ``volume``: itself when 3D; for a 4D ``(X, Y, Z, T)`` one, each of its T
    volumes (``meta["frame"]`` its index, ``meta["path"]`` that of the file) except constant ones
    (a dummy scan holds nothing to learn from or score)."""
    if volume.array.ndim == 3:
        return [volume]
    parts = []
    for t in range(volume.array.shape[3]):
        array = np.ascontiguousarray(volume.array[..., t])
        if not is_constant(array):
            parts.append(Volume(array, volume.affine, {**volume.meta, "frame": t, "shape": array.shape}))
    return parts


def claimed_shape(path: str | os.PathLike, all_frames: bool = False) -> tuple[int, ...] | None:
    """The ``(X, Y, Z)`` shape ``read_volume`` would return, from headers only (no pixel data read);
    with ``all_frames``, that of ``read_volume(path, ALL_FRAMES)``: ``(X, Y, Z, T)`` for a NIfTI
    file of T > 1 volumes.

    An upper bound where only reading decides (a DICOM series or file with several images per
    position counts them all as slices). None when the headers cannot be read: ``read_volume``
    then says why. Lets callers refuse work that will not fit in memory before reading anything
    big.
    """
    path = Path(path)
    try:
        fmt = volume_format(path)
        if fmt == "nifti":
            import nibabel as nib

            shape = tuple(int(n) for n in nib.load(str(path)).shape)
        elif fmt == "dicom":
            ds = _dicom_read(path, pixels=False)
            shape = (
                _whole(path, ds, "Columns", 0),
                _whole(path, ds, "Rows", 0),
                _whole(path, ds, "NumberOfFrames", 1) or 1,
            )
        elif fmt == "dicom-series":
            files = _series_files(path)
            ds = _dicom_read(files[0], pixels=False)
            shape = (_whole(path, ds, "Columns", 0), _whole(path, ds, "Rows", 0), len(files))
        elif fmt == "fastmri-hdf5":
            import h5py

            with h5py.File(path, "r") as f:
                name = next(n for n in _FASTMRI_IMAGES if n in f)
                shape = tuple(int(n) for n in reversed(f[name].shape))
        elif fmt == "npy":
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape = (*read(f)[0], 1)
        elif fmt == "png":
            from PIL import Image

            with Image.open(path) as img:
                shape = (img.size[1], img.size[0], 1)
        else:
            return None
    except Exception:
        return None
    if len(shape) == 5 and shape[3] == 1:  # an AFNI bucket: its sub-bricks are the volumes
        shape = (*shape[:3], shape[4])
    frames = shape[3] if all_frames and len(shape) > 3 and shape[3] > 1 else None
    shape = (*shape, 1, 1)[:3] if len(shape) < 3 else shape[:3]
    if min(shape) < 1:
        return None
    return tuple(int(n) for n in shape) + ((int(frames),) if frames else ())


def volume_format(path: str | os.PathLike) -> str | None:
    """The format name ``read_volume`` would use for ``path`` or None if it cannot read it."""
    path = Path(path)
    if path.is_dir():
        return "dicom-series"
    name = path.name.lower()
    for suffix, fmt in (
        (".nii.gz", "nifti"),
        (".nii", "nifti"),
        (".dcm", "dicom"),
        (".h5", "fastmri-hdf5"),
        (".hdf5", "fastmri-hdf5"),
        (".npy", "npy"),
        (".png", "png"),
    ):
        if name.endswith(suffix):
            return fmt
    head = _head(path, 132)
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(_HDF5_MAGIC):
        return "fastmri-hdf5"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_PNG_MAGIC):
        return "png"
    return None


_KINDS = {"nifti": "NIfTI", "dicom": "DICOM", "dicom-series": "DICOM", "fastmri-hdf5": "HDF5", "npy": ".npy",
          "png": "PNG"}  # fmt: skip


def _reader_for(path: Path) -> Callable[[Path, int | str | None], tuple[np.ndarray, np.ndarray, dict]]:
    fmt = volume_format(path)
    if fmt is None:
        raise FaganError(
            f"{path}: unknown file format; fagan reads {', '.join(SUPPORTED_SUFFIXES)} files and "
            "folders holding one DICOM series - convert the file to NIfTI"
        )
    return _READERS[fmt]


def _head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _finish(
    path: Path, array: np.ndarray, affine: np.ndarray, meta: dict, frame: int | str | None
) -> Volume:
    """Check the decoded data and pack it as a Volume."""
    if array.ndim != 3 and not (array.ndim == 4 and frame == ALL_FRAMES):
        raise FaganError(f"{path}: expected a 3D volume after reading, got shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        where = ""
        if array.ndim == 4:
            volumes = np.flatnonzero(~np.isfinite(array).all(axis=(0, 1, 2)))
            listed = ", ".join(map(str, volumes[:10])) + (", ..." if len(volumes) > 10 else "")
            where = f" (in volume{'s' if len(volumes) > 1 else ''} {listed})"
        raise FaganError(
            f"{path}: {bad} voxels are NaN or infinite{where}; replace them (e.g. with 0) and save again"
        )
    if array.size == 0 or is_constant(array):
        value = float(array.flat[0]) if array.size else float("nan")
        raise FaganError(
            f"{path}: the image is constant ({value:g} everywhere) and holds nothing to "
            "super-resolve; check that the right file (or frame) was given"
        )
    if array.ndim == 4 and all(is_constant(array[..., t]) for t in range(array.shape[3])):
        raise FaganError(
            f"{path}: every one of its {array.shape[3]} volumes is constant and holds nothing to "
            "super-resolve; check that the right file was given"
        )
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise FaganError(f"{path}: the affine is not a finite 4x4 matrix; fix the file's header")
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    if _singular(affine):
        raise FaganError(
            f"{path}: the affine is singular (voxel axes of length {', '.join(f'{v:g}' for v in sizes)} "
            "or parallel); fix the file's header (NIfTI sform/qform and pixdim)"
        )
    meta = {
        "path": str(path),
        "shape": tuple(int(n) for n in array.shape),
        "voxel_size": tuple(float(v) for v in sizes),
        "frame": frame,
        **meta,
    }
    return Volume(array, affine, meta)


def _singular(affine: np.ndarray) -> bool:
    """Whether a voxel axis of ``affine`` has no length or the three are (nearly) coplanar."""
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    return not (sizes > 0).all() or abs(np.linalg.det(affine[:3, :3])) <= 1e-6 * float(np.prod(sizes))


def _shears(affine: np.ndarray) -> bool:
    """Whether the voxel axes of ``affine`` are not orthogonal (a qform cannot hold it)."""
    columns = affine[:3, :3]
    gram = columns.T @ columns
    return not np.allclose(gram, np.diag(np.diag(gram)), rtol=0, atol=1e-6 * float(np.abs(gram).max()))


def _check_size(path: Path, shape: tuple[int, ...], what: str = "the header") -> None:
    n = 1
    for s in shape:
        n *= max(int(s), 0)
    if n > MAX_VOXELS:
        raise FaganError(
            f"{path}: {what} claims {'x'.join(str(int(s)) for s in shape)} = {n} voxels, more than "
            f"the {MAX_VOXELS} fagan accepts; the file is corrupt or must be cropped first"
        )


def _one_line(value: Any, limit: int = 300) -> str:
    """``value`` as text on one line (whitespace runs, newlines included, become one space)."""
    return " ".join(str(value).split())[:limit]


def _corrupt(path: Path, kind: str, exc: BaseException) -> FaganError:
    detail = _one_line(exc) or type(exc).__name__
    return FaganError(
        f"{path}: cannot read this {kind} file ({detail}); it may be truncated or corrupt - "
        "copy or export it again"
    )


def _select_frame(path: Path, n_frames: int, frame: int | str | None, what: str) -> int | None:
    """Validate ``frame`` against ``n_frames`` volumes; return the index to use, or None for
    all of them (``ALL_FRAMES`` with more than one)."""
    if n_frames > 1 and frame is None:
        raise FaganError(
            f"{path}: {what} holds {n_frames} volumes; this needs one 3D volume - save the one you "
            f"want as its own file, or pick it with `fagan upscale --frame 0..{n_frames - 1}`"
        )
    if frame == ALL_FRAMES:
        return None if n_frames > 1 else 0
    index = 0 if frame is None else int(frame)
    if index >= n_frames:
        raise FaganError(
            f"{path}: frame {index} does not exist; {what} holds "
            + (f"{n_frames} volumes, so use --frame 0..{n_frames - 1}" if n_frames > 1 else "one volume")
        )
    return index


# ----------------------------------------------------------------------------------------------
# NIfTI


def _read_nifti(path: Path, frame: int | str | None) -> tuple[np.ndarray, np.ndarray, dict]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        shape = tuple(int(n) for n in img.shape)
        dtype = img.get_data_dtype()
    except Exception as exc:  # nibabel raises many types for bad headers
        raise _corrupt(path, "NIfTI", exc) from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise FaganError(f"{path}: not a NIfTI image ({type(img).__name__}); convert it to NIfTI")
    if dtype.kind == "c":
        raise FaganError(f"{path}: complex data ({dtype}); save the magnitude image instead")
    if dtype.fields is not None:  # RGB, RGBA: a structured dtype
        raise FaganError(f"{path}: a colour NIfTI image ({dtype}); save it as grayscale")
    intent = int(img.header["intent_code"])
    if intent in _LABEL_INTENTS:  # its values are labels, not intensities
        raise FaganError(
            f"{path}: a label map (NIfTI intent {img.header.get_intent()[0]!r}); super-resolution would "
            "blend its labels into non-integer values - resample it with nearest-neighbour interpolation"
        )
    if intent in _NOT_IMAGES:
        raise FaganError(
            f"{path}: NIfTI intent {intent} ({_NOT_IMAGES[intent]}): its values are not an image's "
            "intensities, and super-resolution would not keep their meaning - upscale the image itself"
        )
    # Trailing singleton axes (e.g. X, Y, Z, 1, 1) do not count as extra dimensions, and an AFNI
    # bucket (X, Y, Z, 1, N: no time axis, N sub-bricks along the fifth) is N volumes.
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    volume_axis = 4 if len(shape) == 5 and shape[3] == 1 else 3
    if volume_axis == 4:
        shape = (*shape[:3], shape[4])
    if len(shape) > 4:
        raise FaganError(
            f"{path}: a {len(shape)}D NIfTI image {shape} is not supported; save 3D or 4D volumes"
        )
    if not shape or min(shape) < 1:
        raise FaganError(f"{path}: the header gives an empty image of shape {shape}; the file is corrupt")
    _check_size(path, shape[:3])
    n_frames = shape[3] if len(shape) == 4 else 1
    index = _select_frame(path, n_frames, frame, "this 4D NIfTI file" if n_frames > 1 else "this NIfTI file")
    offset = float(img.header.get("vox_offset", 0))
    if not np.isfinite(offset) or offset < 0:
        raise FaganError(f"{path}: the header's vox_offset is {offset}; the file is corrupt")
    expected = int(offset) + int(np.prod(img.shape, dtype=np.int64)) * dtype.itemsize
    actual = path.stat().st_size
    if not str(path).lower().endswith(".gz"):
        if actual < expected:
            raise FaganError(
                f"{path}: the file is truncated ({actual} bytes, the header needs {expected}); "
                "copy or export it again"
            )
    elif expected > _MAX_DEFLATE_RATIO * actual + 65536:
        raise FaganError(
            f"{path}: the header claims {expected} bytes of image data, more than a {actual}-byte gzip "
            "file can hold; the file is truncated or its header is corrupt"
        )
    try:
        if len(img.shape) <= 3:
            data = img.get_fdata(dtype=np.float32)
        else:  # read only the chosen frame of a 4D file, or all of them
            chosen = slice(None) if index is None else index
            where = [slice(None)] * 3 + [0] * (len(img.shape) - 3)
            where[volume_axis] = chosen
            data = np.asarray(img.dataobj[tuple(where)], dtype=np.float32)
    except Exception as exc:
        raise _corrupt(path, "NIfTI", exc) from exc
    data = data.reshape((shape + (1, 1))[:3] if index is not None else shape)
    meta = {"format": "nifti", "dtype": str(dtype), "n_frames": n_frames}
    # the header's time unit (slice_duration is in it), and the time between volumes in that unit
    meta["time_unit"] = img.header.get_xyzt_units()[1]
    if index is None:
        meta["frame_interval"] = float(img.header["pixdim"][4])
    # The space the affine is in (NIfTI xform code: 1 scanner, 2 aligned, 3 Talairach, 4 MNI),
    # from the transform nibabel took it from: the sform if set, else the qform; 0 when neither
    # is set, where the affine is nibabel's fallback from the voxel size alone and is no space.
    sform, qform = (int(img.header[f"{x}form_code"]) for x in "sq")
    meta["xform_code"] = sform if sform > 0 else qform
    affine = _in_mm(img, img.affine)
    singular = _singular(affine)  # refused by _finish, unless the qform can stand in
    if sform > 0 and qform > 0 and singular and not _singular(img.get_qform()):
        # A set sform that cannot map voxels to space (a zeroed row, say): the valid qform is the
        # only placement the file holds. Its output carries the qform's transform in both fields.
        affine, singular = _in_mm(img, img.get_qform()), False
        meta["xform_code"], meta["geometry"] = qform, "qform, the sform being singular"
    # The display window viewers open it with (cal_min, cal_max), in the units the output keeps;
    # what the values are (intent: a z or t statistic, say; labels were refused above); and the
    # colour map some viewers (FSLeyes, MRIcroGL) take from aux_file.
    cal = (float(img.header["cal_min"]), float(img.header["cal_max"]))
    if np.isfinite(cal).all() and cal[1] > cal[0]:
        meta["display_range"] = cal
    if intent != 0:  # the header's own fields, as they are (nibabel's names miss some codes)
        params = tuple(float(img.header[f"intent_p{i}"]) for i in (1, 2, 3))
        meta["intent"] = (intent, params, img.header["intent_name"].item())
    if img.header["aux_file"].item().strip():
        meta["aux_file"] = img.header["aux_file"].item()
    # Slice timing (AFNI's 3dTshift, FSL's slicetimer read it) and which axes were read out how:
    # true of the output too as long as its slices are the input's.
    meta["slice_info"] = {
        key: (int(img.header[key]) if key != "slice_duration" else float(img.header[key]))
        for key in ("dim_info", "slice_code", "slice_start", "slice_end", "slice_duration")
    }
    image_type = _sidecar_image_type(path)  # one for the whole file
    meta["image_types"] = [[image_type] if image_type else []] * (n_frames if index is None else 1)
    # A file registered by FSL or SPM keeps the scanner's transform in its qform beside the new
    # one in its sform, and readers differ in which they use (ITK, so ITK-SNAP and 3D Slicer,
    # reads the qform unless the sform says scanner). Such a qform, or one with its own code, is
    # kept as the map from the affine's world to the qform's, which no resampling or cropping of
    # the voxel grid changes: the output's qform is that map times the output's affine.
    if sform > 0 and qform > 0 and not singular and "geometry" not in meta:
        q = _in_mm(img, img.get_qform())
        if qform != sform or not np.allclose(q, affine, rtol=0, atol=1e-4):
            meta["qform_world"], meta["qform_code"] = q @ np.linalg.inv(affine), qform
    return data, affine, meta


def _sidecar_image_type(path: Path) -> tuple[str, ...] | None:
    """The DICOM ImageType that dcm2niix copies into a NIfTI file's JSON sidecar (``scan.json``
    beside ``scan.nii.gz``, as BIDS names it); None without a readable one."""
    import json

    sidecar = path.with_name(volume_stem(path.name) + ".json")
    try:
        value = json.loads(sidecar.read_text(encoding="utf-8")).get("ImageType")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(value, str):  # one string, as DICOM writes it: ORIGINAL\PRIMARY\P\ND
        value = value.split("\\")
    return tuple(str(v) for v in value) if isinstance(value, list) and value else None


#: NIfTI intent codes of label maps: NIFTI_INTENT_LABEL and NIFTI_INTENT_NEURONAME.
_LABEL_INTENTS = (1002, 1003)

#: NIfTI intent codes whose values are not intensities that super-resolution could sharpen: the
#: NIfTI-1 matrices, vectors, point sets and surface data, and FSL's warp fields and coefficients.
_NOT_IMAGES = {
    1004: "a gene matrix", 1005: "a symmetric matrix", 1006: "a displacement vector field",
    1007: "a vector field", 1008: "a point set", 1009: "a triangle list", 1010: "quaternions",
    2002: "node indices", 2003: "RGB vectors", 2004: "RGBA vectors", 2005: "surface shape data",
    2006: "an FSL FNIRT displacement field", 2007: "FSL cubic spline coefficients",
    2008: "FSL DCT coefficients", 2009: "FSL quadratic spline coefficients",
    2016: "FSL TOPUP cubic spline coefficients", 2017: "FSL TOPUP quadratic spline coefficients",
}  # fmt: skip

# Millimetres per unit of NIfTI's spatial units; "unknown" is read as mm, as viewers do.
_MM_PER_UNIT = {"meter": 1000.0, "mm": 1.0, "micron": 0.001, "unknown": 1.0}


def _in_mm(img: Any, transform: np.ndarray) -> np.ndarray:
    """One of the image's transforms (its affine, or its qform) with the image's spatial unit
    (xyzt_units) converted to millimetres, the unit every output is written in."""
    unit = img.header.get_xyzt_units()[0]
    affine = np.array(transform, dtype=np.float64)
    affine[:3] *= _MM_PER_UNIT.get(unit, 1.0)
    return affine


def write_nifti(
    path: str | os.PathLike,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    overwrite: bool = False,
    xform_code: int = ALIGNED,
    qform: np.ndarray | None = None,
    qform_code: int | None = None,
    display_range: tuple[float, float] | None = None,
    description: str = "",
    frame_interval: float | None = None,
    time_unit: str | None = None,
    intent: tuple[int, tuple[float, float, float], bytes] | None = None,
    aux_file: bytes = b"",
    slice_info: dict[str, float] | None = None,
) -> None:
    """Write ``array`` (2D, 3D, or 4D ``(X, Y, Z, T)``, stored as float32) with ``affine`` (4x4) to
    ``.nii``/``.nii.gz``. ``time_unit`` (nibabel's names: sec, msec, ...; default sec, or unknown
    for a 4D array) is the header's, and ``frame_interval``, the time between the volumes of a 4D
    array in that unit, goes into pixdim[4] (0, "not known", when not given or not positive).
    ``intent`` (code, p1-p3, name bytes), ``aux_file`` (the bytes
    of a colour map's name, for viewers that read it) and ``slice_info`` (dim_info, slice_code,
    slice_start, slice_end, slice_duration) go into their header fields as given.

    The affine goes into the sform and, unless it shears (which a qform cannot hold), the qform
    too, both with ``xform_code`` (1 scanner, 2 aligned, 3 Talairach, 4 MNI): a viewer that reads
    either one places the image the same. Code 0 says the affine is in no space, as in an input
    that set neither transform: readers then keep only its voxel sizes and place the image
    centred on the origin, x flipped, which is where nibabel's fallback affine of such an input
    put it too (any rotation in ``affine`` is lost, as the input had none to keep). A ``qform``
    (4x4) given with its ``qform_code`` goes into the qform instead, for an image whose two
    transforms differ, unless it shears. ``display_range`` (low, high) goes into cal_min/cal_max,
    where viewers take the initial window from, and ``description`` (cut to 79 characters) into
    descrip.

    The file is written to a temporary name in the same folder and moved into place, so a crash
    never leaves a half-written volume. An existing file is kept unless ``overwrite``.
    """
    import nibabel as nib

    path = Path(path)
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        suffix = ".nii.gz"
    elif name.endswith(".nii"):
        suffix = ".nii"
    else:
        raise FaganError(f"{path}: NIfTI output must end in .nii or .nii.gz")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name ending in {suffix}")
    data = np.asarray(array, dtype=np.float32)
    if data.ndim not in (2, 3, 4):
        raise FaganError(f"write_nifti expects a 2D, 3D or 4D array, got shape {data.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise FaganError(f"write_nifti expects a 4x4 affine, got shape {affine.shape}")
    for code in (xform_code, qform_code):
        if code is not None and code not in (0, 1, 2, 3, 4):
            raise FaganError(f"write_nifti: xform_code and qform_code must be 0, 1, 2, 3 or 4, not {code}")
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, xform_code)
    if qform is not None and not _shears(np.asarray(qform, dtype=np.float64)):
        img.set_qform(np.asarray(qform, dtype=np.float64), xform_code if qform_code is None else qform_code)
    elif not _shears(affine):
        img.set_qform(affine, xform_code)
    else:
        img.set_qform(None, 0)
    img.set_data_dtype(np.float32)
    img.header.set_xyzt_units("mm", time_unit or ("sec" if data.ndim < 4 else "unknown"))
    if data.ndim == 4:
        interval = float(frame_interval) if frame_interval is not None else 0.0
        pixdim = img.header["pixdim"]
        pixdim[4] = interval if np.isfinite(interval) and interval > 0 else 0.0
        img.header["pixdim"] = pixdim
    if intent is not None:
        img.header["intent_code"] = intent[0]
        for i, value in enumerate(intent[1], start=1):
            img.header[f"intent_p{i}"] = value
        img.header["intent_name"] = intent[2][:15]
    img.header["aux_file"] = aux_file[:23]
    for key, value in (slice_info or {}).items():
        img.header[key] = value
    if display_range is not None:
        img.header["cal_min"], img.header["cal_max"] = display_range
    img.header["descrip"] = description.encode("ascii", "replace")[:79]
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, tmp)


# ----------------------------------------------------------------------------------------------
# DICOM


@dataclass
class _Slice:
    """One 2D DICOM image: its position (LPS mm, or None), a tie-break key, a loader, and what
    an error calls it (its file, or its frame)."""

    position: np.ndarray | None
    key: tuple
    load: Callable[[], np.ndarray]  # -> float32 (Rows, Columns), rescale applied
    name: str
    acquired: float | None = None  # acquisition time, seconds into its day
    echo: float | None = None  # echo time, ms
    image_type: tuple[str, ...] | None = None  # ImageType (or a frame's FrameType and component)


@dataclass
class _Plane:
    """In-plane geometry shared by the slices of one volume."""

    orientation: np.ndarray | None  # (6,) row cosine then column cosine, or None
    spacing: tuple[float, float]  # (between rows, between columns) in mm
    thickness: float  # slice step used when positions are missing


def _dicom_read(path: Path, *, pixels: bool) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=not pixels)
    except InvalidDicomError as exc:
        raise FaganError(
            f"{path}: not a DICOM file ({' '.join(str(exc).split())}); give a .dcm file, a folder "
            "holding one DICOM series, or convert the file to NIfTI"
        ) from exc
    except Exception as exc:
        raise _corrupt(path, "DICOM", exc) from exc


def _whole(path: Path, ds: Any, key: str, default: int) -> int:
    """The integer DICOM element ``key`` of ``ds`` (``default`` when absent or empty)."""
    value = ds.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number != int(number):
        raise FaganError(
            f"{path}: the DICOM {key} is {str(value)!r}, not a whole number; the file is corrupt"
        )
    return int(number)


def _seconds(value: Any) -> float | None:
    """A DICOM TM (``HHMMSS.FFFFFF``) or the time of a DT (``YYYYMMDDHHMMSS.FFFFFF``) as seconds
    into its day; None when absent or unreadable."""
    whole, _, fraction = str(value or "").strip().split("+")[0].split("-")[0].partition(".")
    if len(whole) > 6:  # a DT: YYYYMMDDHHMMSS, no shorter, or the time is unknown
        whole = whole[8:] if len(whole) == 14 else ""
    if len(whole) not in (4, 6) or not whole.isdigit() or not (fraction or "0").isdigit():
        return None
    seconds = int(whole[4:6]) if len(whole) == 6 else 0
    return int(whole[:2]) * 3600 + int(whole[2:4]) * 60 + seconds + float(f"0.{fraction or 0}")


def _frame_interval(frames: list[list[_Slice]]) -> float | None:
    """The time between the volumes of a DICOM series in seconds, from the earliest acquisition
    time of each; None when the volumes are echoes (their echo times differ), or their times are
    missing, do not increase, or are unevenly spaced (more than 10% off their median gap)."""
    if len({tuple(sorted({s.echo for s in volume}, key=str)) for volume in frames}) > 1:
        return None
    starts = []
    for volume in frames:
        times = [s.acquired for s in volume]
        if any(t is None for t in times):
            return None
        starts.append(min(times))  # type: ignore[type-var]
    gaps = np.diff(starts)
    if len(gaps) == 0 or (gaps <= 0).any():
        return None
    median = float(np.median(gaps))
    return median if np.abs(gaps - median).max() <= 0.1 * median else None


def _number(value: Any, default: float = 0.0) -> float:
    """A DICOM value as a float for sorting; ``default`` when absent or unreadable."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if np.isfinite(number) else default


def _check_dicom_image(path: Path, ds: Any) -> None:
    if "Rows" not in ds or "Columns" not in ds:
        raise FaganError(f"{path}: this DICOM file holds no image (no Rows/Columns); give an image file")
    rows, columns = _whole(path, ds, "Rows", 0), _whole(path, ds, "Columns", 0)
    frames = _whole(path, ds, "NumberOfFrames", 1) or 1
    if rows < 1 or columns < 1 or frames < 1:
        raise FaganError(
            f"{path}: the DICOM header gives {frames} frame(s) of {rows}x{columns} pixels; "
            "the file is corrupt"
        )
    samples = _whole(path, ds, "SamplesPerPixel", 1) or 1
    photometric = _one_line(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if samples != 1 or not photometric.startswith("MONOCHROME"):
        raise FaganError(
            f"{path}: a colour DICOM image ({photometric}, {samples} samples per pixel); MRI "
            "super-resolution needs grayscale magnitude images - export the grayscale series"
        )
    _check_size(path, (rows, columns, frames))


def _floats(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.isfinite(out).all() else None


def _group_item(ds: Any, index: int | None, sequence: str) -> Any:
    """The item of a functional-group ``sequence`` for frame ``index`` (per-frame, else shared)."""
    for groups, i in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        if i is None or groups not in ds or len(ds[groups].value) <= i:
            continue
        item = ds[groups].value[i]
        if sequence in item and len(item[sequence].value) > 0:
            return item[sequence].value[0]
    return None


def _rescale(path: Path, ds: Any, index: int | None) -> tuple[float, float]:
    item = _group_item(ds, index, "PixelValueTransformationSequence")
    source = item if item is not None and "RescaleSlope" in item else ds
    values = []
    for key, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        value = source.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            values.append(default)
            continue
        try:
            values.append(float(value))
        except (TypeError, ValueError):
            raise FaganError(
                f"{path}: the DICOM {key} is {str(value)!r}, not a number; the file is corrupt"
            ) from None
    return values[0], values[1]


def _plane(ds: Any, index: int | None = None) -> _Plane:
    measures = _group_item(ds, index, "PixelMeasuresSequence")
    orient_item = _group_item(ds, index, "PlaneOrientationSequence")
    spacing = _floats((measures or ds).get("PixelSpacing"), 2)
    if spacing is None:
        spacing = _floats(ds.get("PixelSpacing"), 2)
    spacing = spacing if spacing is not None and (spacing > 0).all() else np.ones(2)
    orientation = _floats((orient_item or ds).get("ImageOrientationPatient"), 6)
    if orientation is not None and not _orthonormal(orientation):
        orientation = None  # not two unit, orthogonal cosines: treat the geometry as missing
    steps = [
        _positive(source, key)
        for source in (measures, ds)
        if source is not None
        for key in ("SpacingBetweenSlices", "SliceThickness")
    ]
    step = next((s for s in steps if s is not None), 1.0)
    return _Plane(orientation, (float(spacing[0]), float(spacing[1])), step)


def _orthonormal(orientation: np.ndarray, tolerance: float = 0.05) -> bool:
    """True if the row and column cosines of ``orientation`` (6,) are unit length and orthogonal."""
    row, column = orientation[:3], orientation[3:]
    return bool(
        abs(np.linalg.norm(row) - 1) < tolerance
        and abs(np.linalg.norm(column) - 1) < tolerance
        and abs(float(np.dot(row, column))) < tolerance
    )


def _positive(source: Any, key: str) -> float | None:
    try:
        value = float(source.get(key))
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _normal(orientation: np.ndarray) -> np.ndarray:
    normal = np.cross(orientation[:3], orientation[3:])
    return normal / (np.linalg.norm(normal) or 1.0)


def _off_line(positions: np.ndarray, normal: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """How far (mm) each of ``positions`` (n, 3) lies from the least-squares line through those at
    the indices ``fit``, within the slices' plane (along ``normal``, the gap check has the say)."""
    k = np.arange(len(positions), dtype=np.float64)
    start, step = np.polynomial.polynomial.polyfit(k[fit], positions[fit], 1)
    residual = positions - (start + k[:, None] * step)
    residual -= np.outer(residual @ normal, normal)
    return np.linalg.norm(residual, axis=1)


def _check_line(
    path: Path, positions: np.ndarray, normal: np.ndarray, tolerance: float, names: list[str]
) -> None:
    """Refuse a stack whose slices do not lie on one straight line (a tilted stack does).

    The slice blamed is the one whose removal leaves the others on the straightest line, and its
    distance from that line is what is measured. Three slices cannot tell which one is off."""
    n = len(positions)
    if n < 3:
        return
    everyone = np.arange(n)
    without = [_off_line(positions, normal, np.delete(everyone, i)) for i in range(n)]
    advice = "keep one complete series per folder, or export it again"
    if n == 3:  # any two lie on a line: measure the middle one against the ends
        off = float(without[1][1])
        if off > tolerance:
            raise FaganError(
                f"{path}: the positions of {', '.join(names)} do not lie on one line (the middle one "
                f"lies {off:.3g} mm off the line through the other two, within their plane); {advice}"
            )
        return
    culprit = min(range(n), key=lambda i: float(np.delete(without[i], i).max()))
    off = float(without[culprit][culprit])
    if off > tolerance:
        raise FaganError(
            f"{path}: {names[culprit]} lies {off:.3g} mm off the line through the other slices' "
            f"positions (ImagePositionPatient), within their plane; {advice}"
        )


def _assemble(
    path: Path, slices: list[_Slice], plane: _Plane, frame: int | str | None, what: str
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Sort slices along the normal, pick a frame if 4D (or keep them all), stack and build the RAS
    affine."""
    located = sum(s.position is not None for s in slices)
    if 0 < located < len(slices):
        raise FaganError(
            f"{path}: {len(slices) - located} of {len(slices)} images have no ImagePositionPatient, so "
            "the series geometry cannot be built; restore the tag or remove those files"
        )
    have_geometry = plane.orientation is not None and located == len(slices)
    meta: dict = {"geometry": "ok" if have_geometry else "missing"}
    if have_geometry:
        meta["xform_code"] = SCANNER  # DICOM positions are in the scanner's patient coordinates
        assert plane.orientation is not None
        normal = _normal(plane.orientation)
        along = [float(np.dot(s.position, normal)) for s in slices]  # type: ignore[arg-type]
        order = sorted(range(len(slices)), key=lambda i: (along[i], slices[i].key))
        # Group images sharing a slice position (0.01 mm apart or less).
        groups: list[list[int]] = []
        for i in order:
            if groups and abs(along[i] - along[groups[-1][0]]) <= 1e-2:
                groups[-1].append(i)
            else:
                groups.append([i])
        counts = {len(g) for g in groups}
        if len(counts) > 1:
            raise FaganError(
                f"{path}: the slice positions hold {min(counts)} to {max(counts)} images each; "
                "files are missing or two series are mixed - keep one complete series per folder"
            )
        n_frames = counts.pop()
        index = _select_frame(path, n_frames, frame, what)
        frames = [
            [slices[sorted(g, key=lambda i: slices[i].key)[t]] for g in groups]
            for t in (range(n_frames) if index is None else [index])
        ]
        chosen = frames[0]  # every frame lies at the same positions
        meta["n_frames"] = n_frames
        if index is None:
            meta["frame_interval"] = _frame_interval(frames)
            meta["time_unit"] = "unknown" if meta["frame_interval"] is None else "sec"
        positions = np.array([s.position for s in chosen])
        if len(chosen) > 1:
            gaps = np.diff([along[g[0]] for g in groups])
            if np.abs(gaps - np.median(gaps)).max() > 0.1 * np.median(gaps) + 1e-3:
                raise FaganError(
                    f"{path}: the slices are unevenly spaced (gaps from {gaps.min():.3g} to "
                    f"{gaps.max():.3g} mm); a file is probably missing - restore the full series"
                )
            step = (positions[-1] - positions[0]) / (len(chosen) - 1)
            # half a pixel, but no less than positions rounded to 0.1 mm can be off
            tolerance = max(0.5 * min(plane.spacing), 0.15)
            _check_line(path, positions, normal, tolerance, [s.name for s in chosen])
        else:
            step = normal * plane.thickness
        lps = np.eye(4)
        lps[:3, 0] = plane.orientation[:3] * plane.spacing[1]
        lps[:3, 1] = plane.orientation[3:] * plane.spacing[0]
        lps[:3, 2] = step
        lps[:3, 3] = positions[0]
    else:
        frames = [sorted(slices, key=lambda s: s.key)]
        _select_frame(path, 1, frame, what)
        meta["n_frames"] = 1
        lps = np.diag([plane.spacing[1], plane.spacing[0], plane.thickness, 1.0])
    # per volume read, the image types of its images (a series can hold magnitude and phase images
    # side by side, as Philips and GE write them)
    meta["image_types"] = [sorted({s.image_type for s in volume if s.image_type}) for volume in frames]
    array: np.ndarray | None = None
    for t, chosen in enumerate(frames):
        for k, s in enumerate(chosen):
            image = s.load()
            if array is None:  # every later image goes straight into place: one copy in memory
                array = np.empty((*image.T.shape, len(chosen), len(frames)), dtype=np.float32)
            if image.T.shape != array.shape[:2]:
                shapes = sorted({image.T.shape[::-1], array.shape[1::-1]})
                raise FaganError(f"{path}: the slices differ in size {shapes}; keep one series per folder")
            array[:, :, k, t] = image.T
    assert array is not None
    return (array[..., 0] if len(frames) == 1 else array), _LPS_TO_RAS @ lps, meta


def _pixels(path: Path, ds: Any) -> np.ndarray:
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise FaganError(
            f"{path}: cannot decode the DICOM pixel data ({detail}; transfer syntax "
            f"{_one_line(getattr(syntax, 'name', syntax))}); the file may be truncated, or compressed with a "
            "codec pydicom lacks - install pylibjpeg or convert the file"
        ) from exc


def _image_type(ds: Any, key: str = "ImageType") -> tuple[str, ...] | None:
    """A DICOM header's ImageType values (e.g. ORIGINAL, PRIMARY, P, ND for a Siemens phase image),
    or those of another element of that form (``key``)."""
    value = ds.get(key)
    if not value:
        return None
    return tuple(str(v) for v in ([value] if isinstance(value, str) else list(value)))


def _frame_type(ds: Any, index: int | None) -> tuple[str, ...] | None:
    """The image type of frame ``index`` of an enhanced multi-frame file: its FrameType (else the
    file's ImageType), followed by its ComplexImageComponent (MAGNITUDE, PHASE, REAL, ...), which
    is where these files say phase."""
    item = _group_item(ds, index, "MRImageFrameTypeSequence")
    values = list((item is not None and _image_type(item, "FrameType")) or _image_type(ds) or ())
    component = item.get("ComplexImageComponent") if item is not None else None
    component = component or ds.get("ComplexImageComponent")
    return tuple(values + ([str(component)] if component else [])) or None


def _dicom_meta(ds: Any) -> dict:
    keys = ("Modality", "SeriesInstanceUID", "SeriesDescription", "BodyPartExamined")
    meta = {k: str(ds.get(k)) for k in keys if ds.get(k) not in (None, "")}
    signed = _number(ds.get("PixelRepresentation")) == 1
    meta["dtype"] = f"{'int' if signed else 'uint'}{int(_number(ds.get('BitsAllocated'), 16))}"
    meta["photometric"] = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    return meta


def _read_dicom_file(path: Path, frame: int | str | None) -> tuple[np.ndarray, np.ndarray, dict]:
    header = _dicom_read(path, pixels=False)
    _check_dicom_image(path, header)
    ds = _dicom_read(path, pixels=True)
    _check_dicom_image(path, ds)
    pixels = _pixels(path, ds)
    n = _whole(path, ds, "NumberOfFrames", 1) or 1
    rows, columns = _whole(path, ds, "Rows", 0), _whole(path, ds, "Columns", 0)
    if pixels.size != n * rows * columns:
        raise FaganError(
            f"{path}: pixel data of shape {pixels.shape} does not match {n} frame(s) of "
            f"{rows}x{columns}; the file is corrupt"
        )
    pixels = pixels.reshape(n, rows, columns)
    slices = []
    for f in range(n):
        index = f if n > 1 else None
        position_item = _group_item(ds, index, "PlanePositionSequence")
        position = _floats((position_item or ds).get("ImagePositionPatient"), 3)
        if n > 1 and position_item is None:
            position = None  # one top-level position cannot place every frame
        content = _group_item(ds, index, "FrameContentSequence")
        temporal = _number(content.get("TemporalPositionIndex")) if content is not None else 0.0
        slope, intercept = _rescale(path, ds, index)

        def load(f: int = f, slope: float = slope, intercept: float = intercept) -> np.ndarray:
            return pixels[f].astype(np.float32) * np.float32(slope) + np.float32(intercept)

        acquired = _seconds(content.get("FrameAcquisitionDateTime")) if content is not None else None
        echo_item = _group_item(ds, index, "MREchoSequence")
        echo = _number(echo_item.get("EffectiveEchoTime")) if echo_item is not None else None
        name = f"frame {f + 1} of the file"
        slices.append(_Slice(position, (temporal, f), load, name, acquired, echo, _frame_type(ds, index)))
    plane = _plane(ds, 0 if n > 1 else None)
    array, affine, meta = _assemble(path, slices, plane, frame, "this DICOM file")
    meta.update(_dicom_meta(ds), format="dicom", n_images=n)
    return array, affine, meta


def _series_files(folder: Path) -> list[Path]:
    """The DICOM files of a series folder, by name (hidden files and DICOMDIR left out)."""
    return [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR" and is_dicom(p)
    ]


def _read_dicom_series(path: Path, frame: int | str | None) -> tuple[np.ndarray, np.ndarray, dict]:
    files = _series_files(path)
    if not files:
        raise FaganError(
            f"{path}: the folder holds no DICOM files; give a folder with one DICOM series, or a file"
        )
    headers = [_dicom_read(p, pixels=False) for p in files]
    series = {str(h.get("SeriesInstanceUID", "")) for h in headers}
    if len(series) > 1:
        raise FaganError(
            f"{path}: the folder mixes {len(series)} DICOM series; move each series into its own folder"
        )
    for p, h in zip(files, headers, strict=True):
        _check_dicom_image(p, h)
        if _whole(p, h, "NumberOfFrames", 1) > 1 and len(files) > 1:
            raise FaganError(f"{p}: a multi-frame file inside a series folder; read each file on its own")
    first = headers[0]
    _check_size(
        path, (_whole(path, first, "Rows", 0), _whole(path, first, "Columns", 0), len(files)), "the series"
    )
    plane = _plane(first)
    first_spacing = _floats(first.get("PixelSpacing"), 2)
    slices = []
    for p, h in zip(files, headers, strict=True):
        orientation = _floats(h.get("ImageOrientationPatient"), 6)
        if orientation is not None and plane.orientation is not None:
            if np.abs(orientation - plane.orientation).max() > 1e-4:
                raise FaganError(
                    f"{path}: the slices have different orientations; keep one series per folder"
                )
        spacing = _floats(h.get("PixelSpacing"), 2)
        known = spacing is not None and first_spacing is not None
        if known and not np.allclose(spacing, first_spacing, rtol=1e-3):
            raise FaganError(
                f"{path}: the slices have different pixel spacings ({spacing[0]:g}x{spacing[1]:g} mm in "
                f"{p.name}, {first_spacing[0]:g}x{first_spacing[1]:g} in {files[0].name}); "
                "keep one series per folder"
            )
        key = (
            _number(h.get("TemporalPositionIdentifier")),
            _number(h.get("EchoTime")),
            _number(h.get("InstanceNumber")),
            p.name,
        )

        def load(p: Path = p) -> np.ndarray:
            ds = _dicom_read(p, pixels=True)
            _check_dicom_image(p, ds)
            image = _pixels(p, ds).astype(np.float32)
            if image.ndim != 2:
                raise FaganError(f"{p}: expected one 2D image, got pixel data of shape {image.shape}")
            slope, intercept = _rescale(p, ds, None)
            return image * np.float32(slope) + np.float32(intercept)

        acquired = _seconds(h.get("AcquisitionTime"))
        position = _floats(h.get("ImagePositionPatient"), 3)
        slices.append(_Slice(position, key, load, p.name, acquired, key[1], _image_type(h)))
    array, affine, meta = _assemble(path, slices, plane, frame, "this DICOM series")
    meta.update(_dicom_meta(first), format="dicom-series", n_images=len(files))
    return array, affine, meta


def is_dicom(path: str | os.PathLike) -> bool:
    """True if ``path`` is a file with a .dcm suffix or DICOM's ``DICM`` marker at byte 128."""
    path = Path(path)
    return path.is_file() and (path.suffix.lower() == ".dcm" or _head(path, 132)[128:132] == b"DICM")


# ----------------------------------------------------------------------------------------------
# fastMRI HDF5

_FASTMRI_IMAGES = ("reconstruction_rss", "reconstruction_esc")


def _ismrmrd_voxel_size(header: Any) -> tuple[float, float, float]:
    """(x, y, z) voxel size in mm from the ISMRMRD XML header's reconSpace, or ones."""
    try:
        text = header[()] if hasattr(header, "shape") else header
        text = text.decode() if isinstance(text, bytes) else str(text)
        root = ET.fromstring(text)

        def find(*names: str) -> ET.Element | None:
            node: ET.Element | None = root
            for name in names:
                children = list(node) if node is not None else []
                node = next((c for c in children if c.tag.split("}")[-1] == name), None)
            return node

        size = []
        for axis in ("x", "y", "z"):
            fov = find("encoding", "reconSpace", "fieldOfView_mm", axis)
            matrix = find("encoding", "reconSpace", "matrixSize", axis)
            value = float(fov.text) / float(matrix.text)  # type: ignore[union-attr,arg-type]
            size.append(value if np.isfinite(value) and value > 0 else 1.0)
        return size[0], size[1], size[2]
    except Exception:
        return 1.0, 1.0, 1.0


def _read_fastmri(path: Path, frame: int | str | None) -> tuple[np.ndarray, np.ndarray, dict]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except Exception as exc:
        raise _corrupt(path, "HDF5", exc) from exc
    try:
        with f:
            return _read_fastmri_open(path, f, frame)
    except (FaganError, MemoryError):
        raise
    except Exception as exc:  # h5py raises KeyError, OSError, RuntimeError... on damaged files
        raise _corrupt(path, "HDF5", exc) from exc


def _read_fastmri_open(path: Path, f: Any, frame: int | str | None) -> tuple[np.ndarray, np.ndarray, dict]:
    import h5py

    name = next((n for n in _FASTMRI_IMAGES if n in f), None)
    if name is None:
        raise FaganError(
            f"{path}: no {' or '.join(_FASTMRI_IMAGES)} image in this HDF5 file (it holds "
            f"{_one_line(', '.join(sorted(f.keys()))) or 'nothing'}); fagan reads fastMRI reconstructions, "
            "reconstruct k-space-only files first"
        )
    dataset = f[name]
    if not isinstance(dataset, h5py.Dataset):
        raise FaganError(
            f"{path}: {name} is a {type(dataset).__name__}, not an image dataset; the file is corrupt"
        )
    shape = tuple(int(n) for n in dataset.shape or ())
    if len(shape) != 3:
        raise FaganError(f"{path}: {name} has shape {shape}, expected (slices, rows, columns)")
    if min(shape) < 1:
        raise FaganError(f"{path}: {name} is empty (shape {shape}); the file is corrupt")
    _check_size(path, shape)
    if dataset.dtype.kind not in "biuf" or dataset.dtype.fields is not None:
        raise FaganError(f"{path}: {name} has dtype {dataset.dtype}; expected real magnitude images")
    _check_stored(path, name, dataset)
    _select_frame(path, 1, frame, "this fastMRI file")
    recon = dataset[()]
    voxel = _ismrmrd_voxel_size(f["ismrmrd_header"]) if "ismrmrd_header" in f else (1.0, 1.0, 1.0)
    attrs = {k: (v.item() if hasattr(v, "item") else str(v)) for k, v in f.attrs.items()}
    array = np.transpose(recon, (2, 1, 0)).astype(np.float32)
    meta = {
        "format": "fastmri-hdf5",
        "dtype": str(recon.dtype),
        "dataset": name,
        "geometry": "voxel size only",
        "attrs": {k: v for k, v in attrs.items() if isinstance(v, (int, float, str))},
    }
    return array, np.diag([*voxel, 1.0]), meta


def _check_stored(path: Path, name: str, dataset: Any) -> None:
    """Refuse, before allocating, a dataset whose file storage cannot hold the shape it claims."""
    import h5py

    claimed = int(np.prod(dataset.shape, dtype=np.int64)) * dataset.dtype.itemsize
    stored = int(dataset.id.get_storage_size())
    plist = dataset.id.get_create_plist()
    filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
    lossless = {h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32}
    if not filters:
        most = stored
    elif filters <= lossless:
        most = stored * _MAX_DEFLATE_RATIO + 65536
    else:  # other compression filters: no bound known, but something must be stored
        most = claimed if stored else 0
    if claimed > most:
        raise FaganError(
            f"{path}: {name} claims {claimed} bytes but the file stores {stored}; the file is truncated "
            "or was never completely written - copy or export it again"
        )


# ----------------------------------------------------------------------------------------------
# 2D images


def _image_2d(path: Path, image: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray, dict]:
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        raise FaganError(
            f"{path}: an RGB image of shape {image.shape}; save a single-channel grayscale image"
        )
    if image.ndim != 2:
        raise FaganError(f"{path}: expected a 2D image, got shape {image.shape}; save volumes as NIfTI")
    if image.dtype.kind not in "biuf":
        raise FaganError(f"{path}: unsupported dtype {image.dtype}; save real-valued (e.g. float32) data")
    meta = {"format": fmt, "dtype": str(image.dtype)}
    return image.astype(np.float32)[:, :, None], np.eye(4), meta


def _read_npy(path: Path, frame: int | str | None) -> tuple[np.ndarray, np.ndarray, dict]:
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, _ = np.lib.format.read_array_header_2_0(f)
    except Exception as exc:
        raise _corrupt(path, ".npy", exc) from exc
    _check_size(path, shape)
    try:
        image = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise _corrupt(path, ".npy", exc) from exc
    _select_frame(path, 1, frame, "this 2D image")
    if image.dtype.kind == "c":
        raise FaganError(f"{path}: complex data; save the magnitude (numpy.abs) instead")
    return _image_2d(path, np.asarray(image), "npy")


def _read_png(path: Path, frame: int | str | None) -> tuple[np.ndarray, np.ndarray, dict]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            width, height = img.size
            _check_size(path, (height, width))
            mode = img.mode
            if mode not in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
                raise FaganError(
                    f"{path}: a {mode} image; MRI needs one grayscale channel - save the image as "
                    "8- or 16-bit grayscale PNG"
                )
            image = np.array(img)
    except FaganError:
        raise
    except Exception as exc:
        raise _corrupt(path, "PNG", exc) from exc
    _select_frame(path, 1, frame, "this 2D image")
    return _image_2d(path, image, "png")


_READERS: dict[str, Callable[[Path, int | str | None], tuple[np.ndarray, np.ndarray, dict]]] = {
    "nifti": _read_nifti,
    "dicom": _read_dicom_file,
    "dicom-series": _read_dicom_series,
    "fastmri-hdf5": _read_fastmri,
    "npy": _read_npy,
    "png": _read_png,
}

__all__ = [
    "MAX_VOXELS",
    "SUPPORTED_SUFFIXES",
    "Volume",
    "claimed_shape",
    "is_dicom",
    "read_volume",
    "volume_format",
    "volume_stem",
    "write_nifti",
]
