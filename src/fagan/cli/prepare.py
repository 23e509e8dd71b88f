"""``fagan prepare DIR --out manifest.json``: split a folder of volumes by subject."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="scan a folder of volumes and write a train/val/test manifest split by subject",
        description=(
            "Scan DIR recursively for volumes (NIfTI, DICOM files and series folders, fastMRI "
            "HDF5, .npy, PNG), group them by subject (the BIDS sub-<label> of a folder or file name, "
            "else the first folder under DIR, else the file itself) and assign whole subjects to "
            "train/val/test."
        ),
    )
    parser.add_argument("dir", metavar="DIR", help="folder holding the volumes")
    parser.add_argument("--out", required=True, metavar="JSON", help="manifest file to write")
    parser.add_argument(
        "--ratios",
        nargs=3,
        type=float,
        default=(0.8, 0.1, 0.1),
        metavar=("TRAIN", "VAL", "TEST"),
        help="share of subjects per split, normalised to sum to 1 (default: 0.8 0.1 0.1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the subject shuffle (default: 0)")
    parser.add_argument(
        "--anatomy",
        metavar="NAME",
        help="anatomy of every volume (e.g. knee): fagan evaluate makes one table per anatomy",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="read every volume first and refuse, naming them all, any that training would stop on "
        "(damaged, NaN, constant) and any that holds labels, not intensities (a segmentation)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing manifest")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fagan import FaganError
    from fagan.data.manifest import BIDS_NOT_SCANS, BIDS_SUBJECT, SPLITS, check_ratios, make_manifest

    root = Path(args.dir)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    if not root.is_dir():
        raise FaganError(f"{root}: not a folder; give the folder that holds the volumes")
    out = Path(args.out)
    if out.suffix.lower() != ".json":  # train, evaluate and experiment know a manifest by its suffix
        raise FaganError(f"{out}: a manifest is a .json file; name it like {out.with_suffix('.json').name}")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    manifest = make_manifest(root, check_ratios(args.ratios), args.seed, args.anatomy)
    if args.check:
        _check_volumes([Path(e.path) for e in manifest.entries], root)
    manifest.save(out, overwrite=args.overwrite)
    counts = manifest.counts()
    parts = []
    for split in SPLITS:
        n = len(manifest.subjects(split))
        parts.append(f"{split} {counts[split]} ({n} subject{'' if n == 1 else 's'})")
    n_subjects = len({e.subject for e in manifest.entries})
    subjects = f"{n_subjects} subject{'' if n_subjects == 1 else 's'}"
    print(f"wrote {out}: {len(manifest.entries)} volumes from {subjects}; " + ", ".join(parts))
    empty = [
        split for split, ratio in zip(SPLITS, args.ratios, strict=True) if ratio > 0 and not counts[split]
    ]
    if empty:
        print(
            f"note: {subjects} cannot fill every split: "
            f"{' and '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty"
            + ("; fagan evaluate needs a test split" if "test" in empty else "")
        )
    loose = [
        e
        for e in manifest.entries
        if Path(e.path).resolve().parent == root.resolve() and not BIDS_SUBJECT.match(e.subject)
    ]
    if len(loose) > 1:
        print(
            f"note: {len(loose)} volumes lie directly in {root}, so each is a subject of its own; "
            "if one person has several, put each person's volumes in a folder of their own (or a "
            "BIDS sub-* folder) and prepare again, so that no person spans two splits"
        )
    skipped = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name in BIDS_NOT_SCANS)
    if skipped:
        print(
            f"note: skipped the {' and '.join(skipped)} folder(s) (other versions of the scans, as in "
            "BIDS); to use one, give it as DIR"
        )
    if not args.check:
        _note_label_names([Path(e.path) for e in manifest.entries], root)
    return 0


#: Parts of file names that segmentations carry (M&Ms' _gt, BIDS' _dseg, ...).
LABEL_NAMES = ("_gt", "_seg", "seg.", "dseg", "label", "mask")


def _note_label_names(paths: list[Path], root: Path) -> None:
    """Say (one line) when volumes are named like segmentations, which training would take for
    images; ``--check`` reads them and refuses label maps."""
    import os

    named = [p for p in paths if any(part in p.name.lower() for part in LABEL_NAMES)]
    if named:
        shown = ", ".join(os.path.relpath(p, root) for p in named[:3]) + (", ..." if len(named) > 3 else "")
        print(
            f"note: {len(named)} volume(s) are named like segmentations ({shown}); training would take "
            "them for images - move them out of the folder, or run prepare with --check, which refuses "
            "label maps"
        )


def _check_volumes(paths: list[Path], root: Path) -> None:
    """Read every volume; one error naming each that cannot be read (at most five shown)."""
    import os

    from fagan import FaganError
    from fagan.data.io import ALL_FRAMES, label_values, read_volume

    bad = []
    for path in paths:
        try:
            array = read_volume(path, frame=ALL_FRAMES).array  # a 4D file's volumes are trained on
        except (FaganError, ValueError, OSError) as exc:
            reason = " ".join(str(exc).split()).removeprefix(f"{path}: ").removeprefix(f"{path} ")
            bad.append(f"{os.path.relpath(path, root)} ({reason})")
            continue
        values = label_values(array)
        if values is not None:
            bad.append(
                f"{os.path.relpath(path, root)} (a label map: {len(values)} integer values, "
                f"{', '.join(f'{v:g}' for v in values[:5])}{', ...' if len(values) > 5 else ''})"
            )
    if bad:
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise FaganError(
            f"{len(bad)} of {len(paths)} volumes cannot be used: {'; '.join(bad[:5])}{more}; "
            "fix or move them out of the folder, then prepare again"
        )
