"""Real MRI shipped with fagan (see ``files/README.md`` for provenance and licences).

The split is fixed: two volumes to train on, one to validate on, and five held-out test
images (brain volumes and slices, a multi-frame DICOM, an abdomen and a shoulder slice) that
are never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fagan import FaganError
from fagan.data.io import volume_stem
from fagan.data.manifest import SPLITS, Manifest, ManifestEntry

FILES = Path(__file__).resolve().with_name("files")


@dataclass(frozen=True)
class SampleVolume:
    """One shipped file: ``name`` (file name without suffix), ``path``, fixed ``split``,
    ``anatomy`` ("brain", "head", "abdomen", "shoulder") and a one-line ``description``."""

    name: str
    path: Path
    split: str
    anatomy: str
    description: str


# (file name, split, anatomy, description)
_TABLE: tuple[tuple[str, str, str, str], ...] = (
    (
        "nilearn_mni152_t1_09a_sym_1mm.nii.gz",
        "train",
        "brain",
        "ICBM152 2009a symmetric T1 average, skull-stripped, 197x233x189 at 1 mm (nilearn)",
    ),
    (
        "pydeface_mean_head.nii.gz",
        "train",
        "head",
        "mean T1 head with skull and face, sagittal, 176x256x256 at 1x0.98x0.98 mm (pydeface)",
    ),
    ("fsl_mni152_t1_2mm.nii.gz", "val", "brain", "FSL MNI152 T1 average with skull, 91x109x91 at 2 mm"),
    ("nibabel_anatomical.nii", "test", "brain", "T1 of one person, 33x41x25 at 2 mm, big-endian (nibabel)"),
    ("pydicom_MR_small.dcm", "test", "brain", "one head MR slice, 64x64 at 0.31 mm (pydicom)"),
    ("pydicomdata_emri_small.dcm", "test", "brain", "enhanced multi-frame head MR, 10 frames of 64x64"),
    ("pydicomdata_abdomen_MR-SIEMENS.dcm", "test", "abdomen", "one abdominal MR slice, 484x484 at 0.72 mm"),
    ("pydicomdata_shoulder_MR2_UNCR.dcm", "test", "shoulder", "one shoulder MR slice, 1024x1024 at 0.2 mm"),
)


def sample_volumes(split: str | None = None) -> list[SampleVolume]:
    """The shipped volumes, all or those of ``split`` ("train", "val", "test")."""
    if split is not None and split not in SPLITS:
        raise FaganError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)} (or None for all)")
    return [
        SampleVolume(volume_stem(name), FILES / name, s, anatomy, description)
        for name, s, anatomy, description in _TABLE
        if split is None or s == split
    ]


def sample_manifest() -> Manifest:
    """A manifest of the shipped volumes with their fixed split (each file its own subject)."""
    entries = [ManifestEntry(str(v.path), v.name, v.split) for v in sample_volumes()]
    return Manifest(entries, extra={"source": "fagan.data.sample"})


__all__ = ["FILES", "SampleVolume", "sample_manifest", "sample_volumes"]
