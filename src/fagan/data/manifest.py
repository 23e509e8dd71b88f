"""Train / val / test manifests that split volumes by subject, never by slice.

A manifest is a JSON file::

    {"format": "fagan-manifest", "version": 1, "seed": 0, "ratios": [0.8, 0.1, 0.1],
     "entries": [{"path": "sub-01/anat/t1.nii.gz", "subject": "sub-01", "split": "train"}, ...]}

An entry may also name its ``"anatomy"`` (``fagan prepare --anatomy knee`` sets it for every
entry); ``fagan evaluate`` then makes one table per anatomy, as the paper's tables are.

Paths are stored relative to the manifest's folder when possible (so a data folder can move
together with its manifest) and are absolute in memory after :meth:`Manifest.load`.

Subject rule used by :func:`make_manifest`, for a volume at ``root/<relative path>``:

1. the BIDS subject label of the first path component, folder or file name, that starts with
   ``sub-<label>``, e.g. ``root/sub-07/ses-2/anat/t1.nii.gz`` and ``root/anat/sub-07_T1w.nii.gz``
   belong to ``sub-07``;
2. otherwise the first folder under ``root``, e.g. ``root/patient12/t2.nii.gz`` and
   ``root/patient12/series3/`` (a DICOM series) belong to ``patient12``;
3. otherwise (the volume lies directly in ``root``) the volume itself, named without its
   suffix, e.g. ``root/knee_004.h5`` is subject ``knee_004``.

Where that rule does not fit a dataset's naming (repeat visits in folders ``p012_visit1`` and
``p012_visit2`` are one person), a regular expression replaces it (``fagan prepare --subject``):
its first group that matched, or its whole match, in the volume's path relative to ``root`` names the
subject.

A new scan of a grown dataset can keep an earlier manifest's split (``fagan prepare --keep``):
every subject of that manifest stays in its split, so no test subject of an earlier run becomes
a training subject, and only the new subjects are dealt (:func:`make_manifest`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fagan import FaganError
from fagan.atomic import atomic_path
from fagan.data.io import SUPPORTED_SUFFIXES, is_dicom

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Share of subjects per split when none is given.
DEFAULT_RATIOS: tuple[float, float, float] = (0.8, 0.1, 0.1)
#: An anatomy names the tables (and their files) of its volumes.
_ANATOMY = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _-]*")
#: A BIDS subject entity at the start of a folder or file name: ``sub-07`` of ``sub-07_T1w.nii.gz``.
BIDS_SUBJECT = re.compile(r"sub-[A-Za-z0-9]+")
#: Folders of a BIDS dataset that hold other versions of its scans, not more of them.
BIDS_NOT_SCANS = frozenset({"derivatives", "sourcedata"})
FORMAT = "fagan-manifest"
VERSION = 1


@dataclass(frozen=True)
class ManifestEntry:
    """One volume: its path (a file, or a folder holding one DICOM series), subject and split,
    and optionally its anatomy (for tables per anatomy)."""

    path: str
    subject: str
    split: str
    anatomy: str | None = None


@dataclass
class Manifest:
    """A list of volumes, each assigned to one split; a subject never spans two splits."""

    entries: list[ManifestEntry]
    seed: int | None = None
    ratios: tuple[float, float, float] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        split_of: dict[str, str] = {}
        split_of_file: dict[Path, ManifestEntry] = {}
        for entry in self.entries:
            anatomy = entry.anatomy
            if anatomy is not None and (not _ANATOMY.fullmatch(anatomy) or anatomy == "all"):
                raise FaganError(
                    f"manifest entry {entry.path}: anatomy {anatomy!r} cannot name a table; use "
                    "letters, digits, spaces, _ and - (and not 'all', the table over every volume)"
                )
            if entry.split not in SPLITS:
                raise FaganError(
                    f"manifest entry {entry.path}: unknown split {entry.split!r}; "
                    f"use one of {', '.join(SPLITS)}"
                )
            first = split_of.setdefault(entry.subject, entry.split)
            if first != entry.split:
                raise FaganError(
                    f"subject {entry.subject!r} appears in both {first} and {entry.split}; "
                    "a subject must stay in one split - fix the manifest"
                )
            other = split_of_file.setdefault(Path(entry.path).resolve(), entry)
            if other is not entry and other.split == entry.split:
                raise FaganError(
                    f"{entry.path} is listed twice in {entry.split}; list each volume once - fix the "
                    "manifest (to weigh volumes equally in training, use data.balance=volumes)"
                )
            if other.split != entry.split:
                raise FaganError(
                    f"{entry.path} is listed in both {other.split} (subject {other.subject!r}) and "
                    f"{entry.split} (subject {entry.subject!r}); a volume must stay in one split - "
                    "fix the manifest"
                )

    def paths(self, split: str) -> list[Path]:
        """The volume paths of ``split`` ("train", "val" or "test"), in manifest order."""
        _check_split(split)
        return [Path(e.path) for e in self.entries if e.split == split]

    def anatomies(self, split: str) -> list[str | None]:
        """The anatomy of each volume of ``split`` (None where unnamed), in :meth:`paths` order."""
        _check_split(split)
        return [e.anatomy for e in self.entries if e.split == split]

    def subjects(self, split: str) -> list[str]:
        """The distinct subjects of ``split``, in manifest order."""
        _check_split(split)
        return list(dict.fromkeys(e.subject for e in self.entries if e.split == split))

    def counts(self) -> dict[str, int]:
        """Number of volumes per split."""
        return {s: sum(e.split == s for e in self.entries) for s in SPLITS}

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the manifest as JSON (atomically); paths become relative to its folder."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
        folder = path.parent.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        document = {
            "format": FORMAT,
            "version": VERSION,
            "seed": self.seed,
            "ratios": list(self.ratios) if self.ratios is not None else None,
            **self.extra,
            "entries": [
                {"path": _relative(e.path, folder), "subject": e.subject, "split": e.split}
                | ({"anatomy": e.anatomy} if e.anatomy is not None else {})
                for e in self.entries
            ],
        }
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Manifest:
        """Read a manifest written by :meth:`save`; relative paths resolve against its folder."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except IsADirectoryError:
            raise FaganError(f"{path} is a folder; give the manifest JSON file") from None
        try:
            document = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FaganError(
                f"{path}: not valid JSON ({exc}); give a manifest written by `fagan prepare`"
            ) from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise FaganError(
                f"{path}: not a fagan manifest; create one with `fagan prepare DIR --out {path}`"
            )
        if document.get("version") != VERSION:
            raise FaganError(
                f"{path}: manifest version {document.get('version')!r} is not supported (this fagan reads "
                f"version {VERSION}); recreate it with `fagan prepare`"
            )
        folder = path.parent.resolve()
        raw = document.get("entries")
        if not isinstance(raw, list):
            raise FaganError(f"{path}: the manifest has no 'entries' list; recreate it with `fagan prepare`")
        entries = []
        for i, item in enumerate(raw):
            missing = [k for k in ("path", "subject", "split") if not isinstance(item, dict) or k not in item]
            if missing:
                raise FaganError(
                    f"{path}: entry {i} lacks {', '.join(missing)}; "
                    "recreate the manifest with `fagan prepare`"
                )
            anatomy = item.get("anatomy")
            if anatomy is not None and not isinstance(anatomy, str):
                raise FaganError(f'{path}: entry {i} has anatomy {anatomy!r}; give a name such as "knee"')
            entries.append(
                ManifestEntry(str(folder / item["path"]), str(item["subject"]), str(item["split"]), anatomy)
            )
        ratios = document.get("ratios")
        extra = {
            k: v for k, v in document.items() if k not in ("format", "version", "seed", "ratios", "entries")
        }
        return cls(entries, document.get("seed"), tuple(ratios) if ratios else None, extra)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise FaganError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def _relative(path: str, folder: Path) -> str:
    """``path`` relative to ``folder`` when both are on one drive, else absolute (POSIX style);
    symbolic links are kept, not followed (a git-annex dataset's files are links)."""
    absolute = Path(os.path.abspath(path))
    try:
        return Path(os.path.relpath(absolute, folder)).as_posix()
    except ValueError:  # different drives on Windows
        return absolute.as_posix()


def _is_volume_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in SUPPORTED_SUFFIXES if s != ".dcm")


def scan_volumes(root: str | os.PathLike) -> list[Path]:
    """All readable volumes under ``root`` (recursive, sorted; hidden entries skipped).

    NIfTI, HDF5, .npy and PNG files count one each. Folders named like BIDS's ``derivatives``
    and ``sourcedata`` (:data:`BIDS_NOT_SCANS`) are skipped: they hold other versions of the
    dataset's scans (skull-stripped, defaced, or the DICOM the NIfTI came from), which would
    count one person's scan several times; give such a folder as ``root`` to use it. DICOM
    files (.dcm, or any file with the DICOM marker) are grouped per folder by SeriesInstanceUID:
    a folder holding one series of several files counts as one volume (the folder), single-file
    series count as files, and a folder mixing a multi-file series with anything else is refused.
    """
    import pydicom

    root = Path(root)
    if not root.is_dir():
        raise FaganError(f"{root}: not a folder; give the folder that holds the volumes")
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        # BIDS keeps processed copies and raw originals of its scans beside them: not more scans
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in BIDS_NOT_SCANS)
        here = Path(folder)
        series: dict[str, list[Path]] = {}
        for name in sorted(files):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            path = here / name
            if _is_volume_file(path):
                found.append(path)
            elif is_dicom(path):
                try:
                    header = pydicom.dcmread(
                        str(path), stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]
                    )
                    uid = str(header.get("SeriesInstanceUID", "")) or f"file:{name}"
                except Exception as exc:
                    log.warning("skipping %s: not a readable DICOM file (%s)", path, exc)
                    continue
                series.setdefault(uid, []).append(path)
        multi = [files for files in series.values() if len(files) > 1]
        stray = [files[0].name for uid, files in series.items() if uid.startswith("file:")]
        if multi and stray:  # a file cut short keeps its marker but loses its series' tags
            raise FaganError(
                f"{here}: {', '.join(stray)} beside a series of {len(multi[0])} files has no "
                "SeriesInstanceUID - a damaged or truncated file? repair it or move it out of the folder"
            )
        if multi and len(series) > 1:
            raise FaganError(
                f"{here}: the folder mixes {len(series)} DICOM series; move each series into its own folder"
            )
        if multi:
            found.append(here)
        else:
            found.extend(files[0] for files in series.values())
    return sorted(found)


def subject_pattern(pattern: str, where: str = "--subject") -> re.Pattern[str]:
    """``pattern`` compiled, or a one-line error (naming ``where`` it came from) when it is not a
    regular expression."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise FaganError(f"{where} {pattern!r} is not a regular expression ({exc})") from None


def subject_of(
    path: str | os.PathLike, root: str | os.PathLike, pattern: re.Pattern[str] | None = None
) -> str | None:
    """The subject a volume belongs to, by the rule in this module's docstring; with ``pattern``,
    its first group that matched (or its whole match, if it has no groups) searched in the path
    relative to ``root``, without a volume suffix (``p01.nii.gz`` names ``p01``), or None where it
    does not match.

    Paths are taken as they sit under ``root``, symbolic links not followed: a DataLad or
    git-annex dataset links every file into ``.git/annex``, and its subjects are the names of the
    links' folders, not of the store's."""
    relative = Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root)))
    if pattern is not None:
        found = pattern.search(relative.as_posix())
        if found is None:
            return None
        name = next((g for g in found.groups() if g), None) if pattern.groups else found.group(0)
        return _without_suffix(name) or None if name else None
    parts = [p for p in relative.parts if p not in (".", "")]
    if not parts:
        return Path(os.path.abspath(root)).name
    for part in parts:
        label = BIDS_SUBJECT.match(part)
        if label:
            return label.group(0)
    if len(parts) > 1:
        return parts[0]
    return _without_suffix(parts[0])


def _without_suffix(name: str) -> str:
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _split_counts(n: int, ratios: Sequence[float]) -> list[int]:
    """Subjects per split: largest remainders, then at least one for every positive ratio if n allows."""
    weights = np.asarray(ratios, dtype=np.float64) / float(np.sum(ratios))
    exact = weights * n
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in range(len(counts)):
        if weights[i] > 0 and counts[i] == 0:
            donor = int(np.argmax(counts))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    return counts.tolist()


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, val, test) ratios: three non-negative numbers, not all zero, train > 0."""
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or any(not np.isfinite(r) or r < 0 for r in values) or values[0] <= 0:
        raise FaganError(
            f"ratios must be three non-negative numbers for train, val, test with train > 0 "
            f"(e.g. 0.8 0.1 0.1), got {list(ratios)}"
        )
    return values  # type: ignore[return-value]


def _deal_new(new: Sequence[str], kept: dict[str, str], ratios: Sequence[float], seed: int) -> dict[str, str]:
    """Splits for the ``new`` subjects beside the ``kept`` ones: each, in a seeded shuffle, goes to
    the split furthest below its share of the subjects counted so far (ties: train, val, test)."""
    weights = np.asarray(ratios, dtype=np.float64) / float(np.sum(ratios))
    counts = np.array([sum(split == s for split in kept.values()) for s in SPLITS], dtype=np.float64)
    dealt: dict[str, str] = {}
    for i in np.random.default_rng(seed).permutation(len(new)):
        deficit = weights * (counts.sum() + 1) - counts
        deficit[weights == 0] = -np.inf
        choice = int(np.argmax(deficit))
        counts[choice] += 1
        dealt[new[i]] = SPLITS[choice]
    return dealt


def _kept_splits(keep: Manifest, subject_of_volume: dict[Path, str | None]) -> dict[str, str]:
    """The split ``keep`` gave each scanned subject: by its name, or by the split of any of its
    volumes that ``keep`` lists (a subject rule changed since); a subject whose volumes ``keep``
    put in two splits is an error."""
    by_subject = {e.subject: e.split for e in keep.entries}
    by_path = {Path(e.path).resolve(): e.split for e in keep.entries}
    splits: dict[str, set[str]] = {}
    for volume, name in subject_of_volume.items():
        assert name is not None
        found = splits.setdefault(name, set())
        found |= {by_subject[name]} if name in by_subject else set()
        found |= {by_path[volume.resolve()]} if volume.resolve() in by_path else set()
    torn = sorted(name for name, found in splits.items() if len(found) > 1)
    if torn:
        name = torn[0]
        raise FaganError(
            f"the manifest to keep put the volumes of subject {name!r} in "
            f"{' and '.join(sorted(splits[name]))}"
            f"{f' (and {len(torn) - 1} more subjects likewise)' if len(torn) > 1 else ''}; weights trained "
            "on it have seen part of a test subject - prepare without --keep to deal every subject afresh"
        )
    return {name: found.pop() for name, found in splits.items() if found}


def make_manifest(
    root: str | os.PathLike,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    anatomy: str | None = None,
    subject: str | None = None,
    keep: Manifest | None = None,
    subject_source: str = "--subject",
) -> Manifest:
    """Scan ``root`` and assign whole subjects to train / val / test (every entry of ``anatomy``,
    if given).

    ``ratios`` are relative weights (normalised to sum to 1) for the share of *subjects* per
    split; every split with a positive ratio gets at least one subject when there are enough.
    The assignment depends only on the set of subjects and ``seed``. ``subject``, a regular
    expression, replaces the subject rule (:func:`subject_of`); a volume it does not match is
    an error. With ``keep``, an earlier manifest, its subjects keep their splits (and a volume
    it lists keeps its anatomy unless ``anatomy`` is given, and a new volume gets the anatomy
    of every entry of ``keep`` when they all have one); only subjects new to it are dealt, one
    at a time to the split furthest below its share. A ``keep`` none of whose subjects is found
    is an error. ``subject_source`` names where ``subject`` came from in its errors.
    """
    ratios = check_ratios(ratios)
    volumes = scan_volumes(root)
    if not volumes:
        raise FaganError(
            f"{root}: no volumes found (looked for {', '.join(SUPPORTED_SUFFIXES)} files and DICOM "
            "series, recursively); point to the folder holding the data"
        )
    pattern = subject_pattern(subject, subject_source) if subject is not None else None
    subject_of_volume = {v: subject_of(v, root, pattern) for v in volumes}
    unmatched = [os.path.relpath(v, root) for v, name in subject_of_volume.items() if name is None]
    if unmatched:
        shown = ", ".join(unmatched[:3]) + (f" and {len(unmatched) - 3} more" if len(unmatched) > 3 else "")
        raise FaganError(
            f"{subject_source} {subject!r} names no subject in {len(unmatched)} of {len(volumes)} volume "
            f"paths ({shown}); it is searched in each path relative to {root}"
        )
    subjects = sorted({name for name in subject_of_volume.values() if name is not None})
    kept = {} if keep is None else _kept_splits(keep, subject_of_volume)
    if keep is not None and not kept:
        raise FaganError(
            f"none of the {len({e.subject for e in keep.entries})} subjects of the manifest to keep is "
            f"found in {root}, by subject name or by volume path (moved data and a changed subject rule?); "
            "keep the subject rule it was made with, or prepare without --keep to deal every subject afresh"
        )
    if kept:
        split_of = kept | _deal_new([s for s in subjects if s not in kept], kept, ratios, seed)
    else:
        order = np.random.default_rng(seed).permutation(len(subjects))
        split_of = {}
        start = 0
        for name, count in zip(SPLITS, _split_counts(len(subjects), ratios), strict=True):
            for i in order[start : start + count]:
                split_of[subjects[i]] = name
            start += count
    anatomy_of = {} if keep is None else {Path(e.path).resolve(): e.anatomy for e in keep.entries}
    named = {e.anatomy for e in keep.entries} if keep is not None else set()
    one_anatomy = named.pop() if len(named) == 1 else None  # the kept manifest's, for new volumes
    entries = []
    for volume, name in subject_of_volume.items():
        assert name is not None
        kept_anatomy = anatomy_of.get(volume.resolve(), one_anatomy)
        entries.append(ManifestEntry(os.path.abspath(volume), name, split_of[name], anatomy or kept_anatomy))
    extra = {"subject_pattern": subject} if subject is not None else {}
    return Manifest(entries, seed=int(seed), ratios=ratios, extra=extra)


def resolve_entries(source: str | os.PathLike, split: str) -> list[tuple[Path, str | None]]:
    """Volumes named by a command-line argument, each with its anatomy (None where unnamed): a
    manifest JSON (its ``split``), a folder (scanned with :func:`scan_volumes`) or a single volume."""
    source = Path(source)
    if source.is_file() and source.name.lower().endswith(".json"):
        manifest = Manifest.load(source)
        return list(zip(manifest.paths(split), manifest.anatomies(split), strict=True))
    if source.is_dir():
        return [(path, None) for path in scan_volumes(source)]
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or directory")
    return [(source, None)]


def resolve_volumes(source: str | os.PathLike, split: str) -> list[Path]:
    """The paths of :func:`resolve_entries`."""
    return [path for path, _ in resolve_entries(source, split)]


__all__ = [
    "BIDS_NOT_SCANS",
    "BIDS_SUBJECT",
    "DEFAULT_RATIOS",
    "SPLITS",
    "Manifest",
    "ManifestEntry",
    "check_ratios",
    "make_manifest",
    "resolve_entries",
    "resolve_volumes",
    "scan_volumes",
    "subject_of",
    "subject_pattern",
]
