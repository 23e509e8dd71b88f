"""``fagan upscale``: super-resolve a whole volume (or a 2D image) with correct geometry."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from fagan.data.io import Volume


#: ``--frame``'s "every volume" (:data:`fagan.data.io.ALL_FRAMES`, which is not imported here so
#: that the CLI starts without numpy).
ALL = "all"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upscale",
        help="super-resolve a NIfTI/DICOM volume or a 2D image slice by slice",
        description="Each 2D slice along --axis is upscaled in its own plane; the output keeps the input's "
        "orientation and field of view, with the in-plane voxel size divided by the scale.",
    )
    p.add_argument("input", help="NIfTI file, DICOM file or series folder, fastMRI .h5, .npy or 8/16-bit PNG")
    p.add_argument("-o", "--output", required=True, help="output .nii/.nii.gz (2D inputs: also .npy or .png)")
    p.add_argument("--scale", type=int, required=True, choices=(2, 4, 8))
    p.add_argument(
        "--weights", help="generator weights (.safetensors); default: the shipped ones for --scale"
    )
    p.add_argument(
        "--variant",
        default="psnr",
        choices=("psnr", "gan"),
        help="shipped weights without --weights: psnr (default, most faithful) or gan (sharper texture)",
    )
    p.add_argument("--axis", type=int, default=2, choices=(0, 1, 2), help="slice axis (default 2)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=4, help="slices per network call (default 4)")
    p.add_argument(
        "--tile",
        type=int,
        help="tile side in input pixels (default: 1024 / scale, a 1024x1024 output per tile; smaller "
        "slices go through whole); 0 disables tiling",
    )
    p.add_argument(
        "--frame",
        type=_frame,
        default=ALL,
        help="the volume of a 4D input to upscale, from 0, or all (the default: a 4D output, each "
        "volume normalised on its own). A NIfTI's volumes are its 4th axis; a DICOM series' are the "
        "images at each position in order of TemporalPositionIdentifier, then EchoTime, then "
        "InstanceNumber",
    )
    p.add_argument(
        "--no-consistency",
        action="store_true",
        help="skip the data-consistency projection (on by default for weights trained on bicubic LR: "
        "the output, downsampled, reproduces the input exactly, except where values below 0 are "
        "clipped for a magnitude image: an input with no values below 0, or only shallow ones)",
    )
    p.add_argument(
        "--clip-negative",
        choices=("auto", "yes", "no"),
        default="auto",
        help="set output values below 0 to 0: auto (the default) does for a magnitude image, an input "
        "with no values below 0 or only shallow ones (none below -10%% of its 99.5th percentile), and "
        "says so when it had any",
    )
    p.add_argument(
        "--self-ensemble",
        action="store_true",
        help="average the outputs of each slice's 8 rotations and mirror images: more accurate, 8x slower",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from fagan import FaganError
    from fagan.data.io import ALL_FRAMES, claimed_shape, read_volume, volume_format
    from fagan.inference import pick_device, upscale_volume
    from fagan.inference.output import (
        available_memory,
        check_output,
        check_output_shape,
        check_png_range,
        check_resources,
        output_kind,
        remove_leftovers,
        save_result,
    )
    from fagan.inference.upscale import UnfittableVolume
    from fagan.models.release import load_release, shipped_weights, trained_degradation

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, not {args.batch_size}")
    from fagan.inference.upscale import DEFAULT_OVERLAP

    if args.tile is not None and (args.tile < 0 or 0 < args.tile <= 2 * DEFAULT_OVERLAP):
        raise ValueError(
            f"--tile must be 0 (off) or more than {2 * DEFAULT_OVERLAP} pixels "
            f"(tiles overlap by {DEFAULT_OVERLAP}), not {args.tile}"
        )
    source = Path(args.input)
    if not source.exists():
        raise FileNotFoundError(f"input not found: {source}")
    output = check_output(args.output, [source], args.overwrite)
    # From the headers: refuse what cannot fit before reading it. A DICOM's count of images is an
    # upper bound on its slices (they may be several volumes), so one volume of it is checked
    # once read, and only what holds for any slice count is checked here.
    shape = claimed_shape(source, all_frames=args.frame == ALL_FRAMES)
    dicom = shape is not None and str(volume_format(source)).startswith("dicom")
    if shape is not None:
        _check_axis(source, shape, args.axis)
        check_output_shape(output, (*shape[:2], 1) if dicom else shape, args.axis)
        if not (dicom and args.frame != ALL_FRAMES):
            check_resources(shape, args.scale, args.axis, output, several_volumes=dicom)
    weights = Path(args.weights) if args.weights else shipped_weights(args.scale, args.variant)
    device = pick_device(args.device)
    generator, meta = load_release(weights, scale=args.scale, device=device)
    remove_leftovers(output, keep=[source])  # temporary files of runs killed while writing it
    try:
        volume = read_volume(source, frame=args.frame)
        _check_axis(source, volume.array.shape, args.axis)
        check_output_shape(output, volume.array.shape, args.axis)
        check_png_range(output, volume.array)
        _warn_geometry(source, volume, args.axis, output)
        _warn_phase(source, volume)
        _warn_labels(source, volume)
        _note_intent(source, volume)
        if shape is None or dicom and args.frame != ALL_FRAMES:  # not checked before reading
            free = available_memory()
            memory = None if free is None else free + volume.array.nbytes
            check_resources(volume.array.shape, args.scale, args.axis, output, memory=memory)
        log = logging.getLogger("fagan")
        log.info("upscaling %s with %s (%s)", source, weights, meta.get("model"))
        consistency, degradation = not args.no_consistency, trained_degradation(meta)
        if consistency and degradation != "bicubic":
            log.info("no data-consistency projection: %s was trained on %s LR", weights, degradation)
            consistency = False
        clip_negative = _clipping(source, volume.array, args.clip_negative)
        result = upscale_volume(
            volume,
            generator,
            axis=args.axis,
            batch_size=args.batch_size,
            tile=args.tile,
            device=device,
            progress=sys.stderr.isatty(),
            self_ensemble=args.self_ensemble,
            consistency=consistency,
            clip_negative=clip_negative,
        )
        save_result(output, result, overwrite=args.overwrite)
    except UnfittableVolume as exc:
        raise FaganError(f"{source}: {exc}; upscale the others one by one with --frame N") from None
    except MemoryError:
        raise FaganError(
            f"ran out of memory upscaling {source}; lower --batch-size or --tile, or crop the volume"
        ) from None
    out_shape = result.array.shape
    size = "x".join(map(str, out_shape[:2] if output_kind(output) in (".npy", ".png") else out_shape))
    volumes = f"; {out_shape[3]} volumes" if len(out_shape) == 4 else ""
    print(f"wrote {output} ({size}, x{args.scale} along axes {sorted({0, 1, 2} - {args.axis})}{volumes})")
    return 0


def _frame(text: str) -> int | str:
    """``--frame``: ``all`` or a volume's index (0 or more)."""
    if text == ALL:
        return text
    try:
        index = int(text)
    except ValueError:
        message = f"expected all or a volume index (0, 1, ...), not {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if index < 0:
        raise argparse.ArgumentTypeError(f"a volume index is 0 or more, not {index}")
    return index


def _check_axis(source: object, shape: tuple[int, ...], axis: int) -> None:
    """Refuse a 2D image (one slice along axis 2) asked to be upscaled along another axis."""
    if axis != 2 and shape[2] == 1:
        raise ValueError(f"{source} is a 2D image; upscale it along --axis 2")


def _warn_phase(source: object, volume: Volume) -> None:
    """Warn (on stderr, one line) when the input is a phase image: its DICOM ImageType (or the one
    dcm2niix copied into a NIfTI's JSON sidecar) says so (Siemens stores phase as -4096..4094), or
    its values span -pi..pi like a wrapped phase map in radians."""
    import sys

    low, high = float(volume.array.min()), float(volume.array.max())
    per_volume = volume.meta.get("image_types", [])
    phase = [t for t, types in enumerate(per_volume) if any(_says_phase(x) for x in types)]
    if phase:
        named = "\\".join(next(x for x in per_volume[phase[0]] if _says_phase(x)))
        if len(phase) < len(per_volume):  # a series of magnitude and phase volumes
            listed = ", ".join(map(str, phase[:10])) + (", ..." if len(phase) > 10 else "")
            many = len(phase) > 1
            why = (
                f"volume{'s' if many else ''} {listed} (of 0..{len(per_volume) - 1}) "
                f"{'are phase images' if many else 'is a phase image'} ({named})"
            )
            advice = "upscale the magnitude volumes one by one with --frame N"
        else:
            why, advice = f"its ImageType is {named}, a phase image", "upscale the magnitude image"
    elif -3.3 < low < -3.0 and 3.0 < high < 3.3 and not _statistic(volume.meta):  # -pi..pi
        why = f"it holds values from {low:.4g} to {high:.4g}, like a wrapped phase map"
        advice = "upscale the magnitude image"
    else:
        return
    print(
        f"fagan: warning: {source}: {why}; super-resolution blends values across the phase wraps - "
        f"{advice}, or the phase unwrapped",
        file=sys.stderr,
    )


def _warn_labels(source: object, volume: Volume) -> None:
    """Warn (on stderr, one line) when the input looks like a segmentation without saying so (no
    label intent, which is refused): a few integer values only."""
    import sys

    from fagan.data.io import label_values

    values = label_values(volume.array)
    if values is not None:
        shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if len(values) > 5 else "")
        print(
            f"fagan: warning: {source} holds only {len(values)} integer values ({shown}), like a label "
            "map; super-resolution blends labels into values between them - resample a segmentation "
            "with nearest-neighbour interpolation",
            file=sys.stderr,
        )


def _statistic(meta: dict) -> bool:
    """Whether a NIfTI input's intent says its values are a statistic (codes 2-24: t, z, F, ...),
    which may well span -pi..pi without being a phase."""
    intent = meta.get("intent")
    return intent is not None and 2 <= intent[0] <= 24


def _note_intent(source: object, volume: Volume) -> None:
    """Say (on stderr, one line) when a NIfTI input's intent is not written to its output
    (:func:`fagan.inference.output.output_intent`)."""
    import sys

    from fagan.inference.output import output_intent

    intent = volume.meta.get("intent")
    if intent is not None and output_intent(volume.meta, volume.array.ndim) is None:
        print(
            f"fagan: note: {source} has NIfTI intent code {intent[0]}; its output does not say so, as "
            "upscaling can take such values out of their range (or one volume is not a time series)",
            file=sys.stderr,
        )


def _says_phase(image_type: tuple[str, ...]) -> bool:
    """Whether DICOM ImageType values name a phase image: P after ORIGINAL/DERIVED and
    PRIMARY/SECONDARY (Siemens), or PHASE in any value (Philips), the rule dcm2niix uses."""
    values = [v.upper() for v in image_type]
    return "P" in values[2:] or any("PHASE" in v for v in values)


def _clipping(source: object, array: np.ndarray, choice: str) -> bool:
    """Whether the output is clipped at 0 (``--clip-negative``: "auto" decides by
    :func:`fagan.inference.upscale.is_magnitude`). Says (on stderr, one line) when an input with
    values below 0 is taken for a magnitude image."""
    import sys

    import numpy as np

    from fagan.inference.upscale import bright_end, is_magnitude

    low = float(array.min())
    if choice != "auto":
        return choice == "yes"
    magnitude = is_magnitude(array)
    if magnitude and low < 0:
        n = int(np.count_nonzero(array < 0))
        print(
            f"fagan: note: {source} has values below 0 ({n} voxel{'s' if n != 1 else ''}, down to "
            f"{low:.4g}, {-low / bright_end(array):.1%} of its bright end), taken for undershoot of a "
            "magnitude image: the output is clipped at 0 (--clip-negative no keeps its negative values)",
            file=sys.stderr,
        )
    return magnitude


def _warn_geometry(source: object, volume: Volume, axis: int, output: Path) -> None:
    """Warn (on stderr, one line each) when a DICOM input has no geometry for a NIfTI output, when
    a NIfTI input is placed by its qform because its sform is singular, and when the planes to be
    upscaled hold the volume's thick voxels."""
    import sys

    from fagan.inference.geometry import coarse_in_plane_axis, voxel_sizes
    from fagan.inference.output import output_kind

    if volume.meta.get("geometry") == "missing" and output_kind(output) in (".nii", ".nii.gz"):
        print(  # a DICOM without (valid) position or orientation
            f"fagan: warning: {source} has no usable patient position and orientation; the output "
            "keeps its voxel sizes, but not the scanner's coordinates",
            file=sys.stderr,
        )
    if volume.meta.get("geometry") == "qform, the sform being singular":
        print(
            f"fagan: warning: {source}: its sform is set but singular, so its valid qform places it; "
            "the output has that transform as its sform and qform",
            file=sys.stderr,
        )
    coarse = coarse_in_plane_axis(volume.affine, volume.array.shape[:3], axis)
    if coarse is None:
        return
    sizes = voxel_sizes(volume.affine)
    print(
        f"fagan: warning: {source} has {sizes[coarse]:.3g} mm voxels along axis {coarse}, in the planes "
        f"being upscaled, against {sizes[axis]:.3g} mm along --axis {axis}; if the acquired planes are "
        f"the thin ones, pass --axis {coarse}",
        file=sys.stderr,
    )
