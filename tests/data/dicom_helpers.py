"""Building tiny DICOM files with pydicom for the IO tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def base_dataset(rows: int, columns: int, series_uid: str, sop_class: str = MRImageStorage) -> Dataset:
    """An MR dataset with file meta and 16-bit unsigned monochrome pixel attributes, no pixels."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.StudyInstanceUID = "1.2.3.4"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def write_slice(
    path: Path,
    pixels: np.ndarray,
    *,
    position: tuple[float, float, float] | None,
    orientation: tuple[float, ...] | None = (1, 0, 0, 0, 1, 0),
    spacing: tuple[float, float] = (1.0, 1.0),
    thickness: float = 1.0,
    slope: float = 1.0,
    intercept: float = 0.0,
    series_uid: str = "1.2.3.4.5",
    instance: int = 1,
    **extra: object,
) -> None:
    """Write one single-frame slice; ``pixels`` is (Rows, Columns) uint16."""
    ds = base_dataset(*pixels.shape, series_uid)
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in spacing]
    ds.SliceThickness = float(thickness)
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.InstanceNumber = instance
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_multiframe(
    path: Path,
    frames: np.ndarray,
    positions: list[tuple[float, float, float]],
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    spacing: tuple[float, float] = (1.0, 1.0),
    slope: float = 1.0,
    intercept: float = 0.0,
    **extra: object,
) -> None:
    """Write an enhanced multi-frame MR file; ``frames`` is (N, Rows, Columns) uint16; ``extra``
    elements are set on the top-level dataset."""
    n, rows, columns = frames.shape
    ds = base_dataset(rows, columns, generate_uid(), ENHANCED_MR)
    ds.NumberOfFrames = n
    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = [float(v) for v in orientation]
    measures = Dataset()
    measures.PixelSpacing = [float(v) for v in spacing]
    measures.SliceThickness = 1.0
    transform = Dataset()
    transform.RescaleSlope = slope
    transform.RescaleIntercept = intercept
    shared.PlaneOrientationSequence = Sequence([orient])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for position in positions:
        item = Dataset()
        plane = Dataset()
        plane.ImagePositionPatient = [float(v) for v in position]
        item.PlanePositionSequence = Sequence([plane])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(frames, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
