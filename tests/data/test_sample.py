"""The shipped sample MRI: fagan.data.sample."""

from __future__ import annotations

import numpy as np
import pytest

from fagan import FaganError
from fagan.data import read_volume, sample_manifest, sample_volumes
from fagan.data.sample import FILES

EXPECTED_SPLIT = {
    "train": {"nilearn_mni152_t1_09a_sym_1mm", "pydeface_mean_head"},
    "val": {"fsl_mni152_t1_2mm"},
    "test": {
        "nibabel_anatomical",
        "pydicom_MR_small",
        "pydicomdata_emri_small",
        "pydicomdata_abdomen_MR-SIEMENS",
        "pydicomdata_shoulder_MR2_UNCR",
    },
}


def test_split_is_the_decided_one():
    for split, names in EXPECTED_SPLIT.items():
        assert {v.name for v in sample_volumes(split)} == names
    assert len(sample_volumes()) == 8


def test_every_shipped_volume_is_listed_and_licensed():
    shipped = {p.name for p in FILES.iterdir()} - {
        "README.md",
        "MNI_ICBM152_LICENSE.txt",
        "pydeface_LICENSE.txt",
    }
    assert shipped == {v.path.name for v in sample_volumes()}
    notice = (FILES / "README.md").read_text()
    for volume in sample_volumes():
        assert volume.path.name in notice
    assert (FILES / "MNI_ICBM152_LICENSE.txt").is_file() and (FILES / "pydeface_LICENSE.txt").is_file()


@pytest.mark.parametrize("volume", sample_volumes(), ids=lambda v: v.name)
def test_every_sample_volume_reads(volume):
    array, affine, meta = read_volume(volume.path)
    assert array.dtype == np.float32 and array.ndim == 3
    assert np.isfinite(array).all() and array.max() > array.min()
    assert affine.shape == (4, 4) and abs(np.linalg.det(affine[:3, :3])) > 0
    assert volume.anatomy in {"brain", "head", "abdomen", "shoulder"} and volume.description


def test_sample_manifest_matches_the_split():
    manifest = sample_manifest()
    assert manifest.counts() == {"train": 2, "val": 1, "test": 5}
    assert {p.name for p in manifest.paths("test")} == {v.path.name for v in sample_volumes("test")}
    assert all(p.is_file() for p in manifest.paths("train"))


def test_unknown_split_is_refused():
    with pytest.raises(FaganError, match="train, val, test"):
        sample_volumes("training")


def test_slice_dataset_builds_from_a_sample_volume():
    from fagan.data import SliceDataset

    dataset = SliceDataset([v.path for v in sample_volumes("val")], scale=4)
    assert 40 < len(dataset) <= 91
    pair = dataset[len(dataset) // 2]
    assert pair.hr.shape == (1, 88, 108) and pair.lr.shape == (1, 22, 27)
