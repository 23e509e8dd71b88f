"""``fagan prepare DIR --out manifest.json``: split a folder of volumes by subject."""

from __future__ import annotations

import argparse
import os
import re
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
        metavar=("TRAIN", "VAL", "TEST"),
        help="share of subjects per split, normalised to sum to 1 (default: 0.8 0.1 0.1, or the "
        "ratios of the --keep manifest)",
    )
    parser.add_argument(
        "--subject",
        metavar="REGEX",
        help="name subjects by this regular expression instead: its first group that matched (or its "
        "whole match) in each volume's path relative to DIR, e.g. '^(p[0-9]+)_visit' so that "
        "p012_visit1/ and p012_visit2/ are one person",
    )
    parser.add_argument(
        "--keep",
        metavar="JSON",
        help="an earlier manifest of this data: its subjects stay in their splits (no earlier test "
        "subject becomes a training one) and only new subjects are dealt; its ratios, --subject rule "
        "and (when it names one for every volume) anatomy apply unless given",
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
    from fagan.data.manifest import (
        BIDS_NOT_SCANS,
        BIDS_SUBJECT,
        DEFAULT_RATIOS,
        SPLITS,
        Manifest,
        check_ratios,
        make_manifest,
    )

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
    keep = None
    if args.keep is not None:
        if not Path(args.keep).is_file():
            raise FileNotFoundError(f"--keep {args.keep}: no such manifest file")
        keep = Manifest.load(args.keep)
    ratios = args.ratios or (keep.ratios if keep is not None and keep.ratios else DEFAULT_RATIOS)
    subject, source = args.subject, "--subject"
    if subject is None and keep is not None and isinstance(keep.extra.get("subject_pattern"), str):
        # the kept split's own subject rule
        subject, source = keep.extra["subject_pattern"], f"the subject_pattern of {args.keep}"
    manifest = make_manifest(root, check_ratios(ratios), args.seed, args.anatomy, subject, keep, source)
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
    volumes = f"{len(manifest.entries)} volume{'' if len(manifest.entries) == 1 else 's'}"
    print(f"wrote {out}: {volumes} from {subjects}; " + ", ".join(parts))
    if keep is not None:
        _note_kept(keep, manifest, Path(args.keep))
    empty = [split for split, ratio in zip(SPLITS, ratios, strict=True) if ratio > 0 and not counts[split]]
    if empty:
        print(
            f"note: {subjects} cannot fill every split: "
            f"{' and '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty"
            + ("; fagan evaluate needs a test split" if "test" in empty else "")
        )
    loose = [
        e
        for e in manifest.entries
        if Path(e.path).parent == Path(os.path.abspath(root)) and not BIDS_SUBJECT.match(e.subject)
    ]
    if subject is None:
        _note_visits(sorted({e.subject for e in manifest.entries}))
    if len(loose) > 1 and subject is None:
        print(
            f"note: {len(loose)} volumes lie directly in {root}, so each is a subject of its own; "
            "if one person has several, put each person's volumes in a folder of their own (or a "
            "BIDS sub-* folder) and prepare again, so that no person spans two splits"
        )
    skipped = _skipped_folders(root, BIDS_NOT_SCANS)
    if skipped:
        shown = ", ".join(skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        print(
            f"note: skipped {len(skipped)} folder(s) of other versions of the scans, as in BIDS ({shown}); "
            "to use one, give it as DIR"
        )
    if not args.check:
        _note_label_names([Path(e.path) for e in manifest.entries], root)
    return 0


def _skipped_folders(root: Path, names: frozenset[str]) -> list[str]:
    """The folders under ``root``, at any depth, that the scan skips by name (relative paths)."""
    import os

    found = []
    for folder, dirs, _ in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.relpath(Path(folder) / d, root) for d in dirs if d in names]
        dirs[:] = [d for d in dirs if d not in names]
    return found


def _note_kept(keep, manifest, path: Path) -> None:
    """Say how many subjects kept their split from ``keep``, how many were dealt, and how many of
    ``keep``'s subjects the scan no longer found."""
    old_paths = {Path(e.path).resolve() for e in keep.entries}
    old_subjects = {e.subject for e in keep.entries}
    new_paths = {Path(e.path).resolve() for e in manifest.entries}
    new_subjects = {e.subject for e in manifest.entries}
    kept = {
        e.subject
        for e in manifest.entries
        if e.subject in old_subjects or Path(e.path).resolve() in old_paths
    }
    found = new_subjects | {e.subject for e in keep.entries if Path(e.path).resolve() in new_paths}
    line = f"kept the splits of {len(kept)} subject(s) from {path}; dealt {len(new_subjects - kept)} new"
    if old_subjects - found:
        line += f"; {len(old_subjects - found)} of its subjects were not found in DIR and are left out"
    print(line)


#: A visit or time point: ``visit2``, ``ses-1``, ``tp3``, ``baseline``, ``m06`` (ADNI), ``MR2``
#: (OASIS), ``week4``, or a date. Contrast names (``T1``), splits (``test``) and bare numbers are not.
_VISIT_WORD = (
    r"(?:(?:visit|session|timepoint|time|scan|followup|follow-up|baseline|repeat|rescan|retest|pre|post|"
    r"month|week|day|year|bl)[ _-]?[0-9]*|(?:ses|tp|fu|v|m|mr)[ _-]?[0-9]+|(?:19|20)[0-9]{2}(?:[0-9]{4})?)"
)
#: A subject name ending in a visit marker: ``p012_visit2`` is ``p012`` at ``visit2``.
_VISIT = re.compile(rf"^(?P<stem>.+?)(?P<sep>[ _.-]+){_VISIT_WORD}$", re.IGNORECASE)


def _person_pattern(stem: str, sep: str) -> str:
    """A --subject pattern for names like ``stem`` followed by ``sep`` and a visit: its digit runs
    stand for any number, so ``p01`` and ``_`` give ``^(p[0-9]+)_``."""
    parts = re.split(r"([0-9]+)", stem)
    body = "".join("[0-9]+" if part.isdigit() else re.escape(part) for part in parts if part)
    return f"^({body}){re.escape(sep[0])}"


def _note_visits(subjects: list[str]) -> None:
    """Say (one line) when subjects look like visits of one person (``p012_visit1`` and
    ``p012_visit2``, or first-level folders ``baseline/`` and ``followup/``), which the split
    would treat as different people."""
    visits = [name for name in subjects if re.fullmatch(_VISIT_WORD, name, re.IGNORECASE)]
    if visits:
        print(
            f"note: subjects named like visits ({', '.join(visits[:3])}): the first folder under DIR "
            "names the subject, so one person's visits may span two splits - if the person is the next "
            "folder down, prepare again with --subject '^[^/]+/([^/]+)'"
        )
        return
    found = {name: _VISIT.match(name) for name in subjects}
    stems: dict[str, list[str]] = {}
    for name, match in found.items():
        if match:
            stems.setdefault(match.group("stem"), []).append(name)
    shared = {stem: names for stem, names in stems.items() if len(names) > 1}
    if not shared:
        return
    stem, names = next(iter(sorted(shared.items())))
    pattern = _person_pattern(stem, found[names[0]].group("sep"))  # type: ignore[union-attr]
    # suggested only where it names every subject, each visit of a person alike
    fits = all(re.match(pattern, name) for name in subjects)
    advice = f"e.g. --subject '{pattern}'" if fits else "with --subject REGEX naming the person"
    print(
        f"note: {len(shared)} name(s) may be several visits of one person ({', '.join(names[:3])}); "
        f"each is a subject of its own, so one person may span two splits - if they are one person, "
        f"prepare again {advice}"
    )


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
