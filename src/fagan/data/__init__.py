"""Data: reading volumes, intensity normalisation, degradation, slice datasets and splits.

- :mod:`fagan.data.io` reads NIfTI, DICOM, fastMRI HDF5 and 2D images as ``(array, affine,
  meta)`` and writes NIfTI;
- :mod:`fagan.data.normalize` fits a per-volume robust scaling to [0, 1] and inverts it;
- :mod:`fagan.data.degrade` makes LR inputs (the paper's bicubic, or k-space truncation);
- :mod:`fagan.data.datasets` cuts volumes into (LR, HR) slice pairs;
- :mod:`fagan.data.manifest` splits volumes by subject into train / val / test;
- :mod:`fagan.data.sample` is the real MRI shipped with fagan.
"""

from fagan.data.datasets import SliceDataset, SlicePair
from fagan.data.degrade import DEGRADATIONS, crop_to_multiple, degrade, upsample_bicubic
from fagan.data.io import SUPPORTED_SUFFIXES, Volume, read_volume, write_nifti
from fagan.data.manifest import Manifest, ManifestEntry, make_manifest, scan_volumes
from fagan.data.normalize import IntensityScaling, fit_scaling
from fagan.data.sample import SampleVolume, sample_manifest, sample_volumes

__all__ = [
    "DEGRADATIONS",
    "SUPPORTED_SUFFIXES",
    "IntensityScaling",
    "Manifest",
    "ManifestEntry",
    "SampleVolume",
    "SliceDataset",
    "SlicePair",
    "Volume",
    "crop_to_multiple",
    "degrade",
    "fit_scaling",
    "make_manifest",
    "read_volume",
    "sample_manifest",
    "sample_volumes",
    "scan_volumes",
    "upsample_bicubic",
    "write_nifti",
]
