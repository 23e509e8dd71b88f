"""Fingerprints of volume files: fagan.data.fingerprint."""

from __future__ import annotations

import shutil

import numpy as np

from fagan.data.fingerprint import CHUNK, fingerprint
from fagan.data.io import write_nifti

from .dicom_helpers import write_slice


def test_a_copy_matches_and_another_scan_does_not(tmp_path):
    rng = np.random.default_rng(0)
    write_nifti(tmp_path / "a.nii.gz", rng.random((30, 30, 20)).astype(np.float32), np.eye(4))
    write_nifti(tmp_path / "b.nii.gz", rng.random((30, 30, 20)).astype(np.float32), np.eye(4))
    shutil.copy(tmp_path / "a.nii.gz", tmp_path / "renamed.nii.gz")
    a = fingerprint(tmp_path / "a.nii.gz")
    assert len(a) == 16 and int(a, 16) >= 0
    assert fingerprint(tmp_path / "renamed.nii.gz") == a != fingerprint(tmp_path / "b.nii.gz")


def test_the_end_of_a_large_file_counts(tmp_path):
    data = bytearray(np.random.default_rng(1).bytes(3 * CHUNK))
    (tmp_path / "x.npy").write_bytes(bytes(data))
    before = fingerprint(tmp_path / "x.npy")
    data[-1] ^= 1
    (tmp_path / "x.npy").write_bytes(bytes(data))
    assert fingerprint(tmp_path / "x.npy") != before


def test_a_dicom_series_folder_is_one_fingerprint_over_its_files(tmp_path):
    (tmp_path / "s").mkdir()
    for k in range(3):
        write_slice(tmp_path / "s" / f"IM{k}", np.full((4, 4), k, np.uint16), position=(0, 0, k))
    whole = fingerprint(tmp_path / "s")
    assert whole != fingerprint(tmp_path / "s" / "IM0")
    (tmp_path / "s" / "IM2").unlink()
    assert fingerprint(tmp_path / "s") != whole
