"""Subject-wise splits: fagan.data.manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fagan import FaganError
from fagan.data.manifest import (
    SPLITS,
    Manifest,
    ManifestEntry,
    make_manifest,
    resolve_volumes,
    scan_volumes,
    subject_of,
    subject_pattern,
)

from .dicom_helpers import write_slice


def _touch_nifti(path: Path) -> None:
    # Scanning never reads NIfTI content, so any bytes with the right name will do.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 8)


def _series(folder: Path, n: int, uid: str = "1.2.3") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        write_slice(
            folder / f"IM{k:04d}", np.full((4, 4), k + 1, np.uint16), position=(0, 0, k), series_uid=uid
        )


@pytest.fixture
def tree(tmp_path) -> Path:
    """A folder mixing BIDS subjects, plain subject folders, DICOM and loose files."""
    root = tmp_path / "data"
    _touch_nifti(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    _touch_nifti(root / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_T1w.nii.gz")
    _touch_nifti(root / "derivatives" / "sub-02" / "t1.nii")
    _touch_nifti(root / "patientA" / "t2.nii.gz")
    np.save(root / "patientA" / "slice.npy", np.ones((2, 2)))
    Image.fromarray(np.ones((2, 2), np.uint8)).save(root / "patientA" / "slice.png")
    _series(root / "patientB" / "series1", 3)
    (root / "patientC").mkdir()
    write_slice(root / "patientC" / "single.dcm", np.ones((4, 4), np.uint16), position=(0, 0, 0))
    _touch_nifti(root / "loose_volume.nii.gz")
    (root / "README.txt").write_text("not a volume")
    _touch_nifti(root / ".hidden" / "x.nii")
    return root


def test_scan_finds_every_volume_and_counts_a_series_once(tree):
    found = [p.relative_to(tree).as_posix() for p in scan_volumes(tree)]
    assert found == [  # derivatives/ holds other versions of the scans, not more scans
        "loose_volume.nii.gz",
        "patientA/slice.npy",
        "patientA/slice.png",
        "patientA/t2.nii.gz",
        "patientB/series1",
        "patientC/single.dcm",
        "sub-01/anat/sub-01_T1w.nii.gz",
        "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz",
    ]


def test_subject_rule(tree):
    assert subject_of(tree / "sub-01/ses-2/anat/x.nii.gz", tree) == "sub-01"
    assert subject_of(tree / "derivatives/sub-02/t1.nii", tree) == "sub-02"
    assert subject_of(tree / "patientB/series1", tree) == "patientB"
    assert subject_of(tree / "loose_volume.nii.gz", tree) == "loose_volume"
    # BIDS file names outside a sub-* folder: the subject is the name's sub-<label>, not the file
    assert subject_of(tree / "sub-03_T1w.nii.gz", tree) == "sub-03"
    assert subject_of(tree / "sub-03_ses-2_T2w.nii.gz", tree) == "sub-03"
    assert subject_of(tree / "anat/sub-04_run-1_T1w.nii.gz", tree) == "sub-04"
    assert subject_of(tree / "sub-05_ses-1/t1.nii", tree) == "sub-05"


def test_a_flat_bids_folder_keeps_each_subject_in_one_split(tmp_path):
    for sub in range(1, 7):
        for suffix in ("T1w", "T2w", "run-2_T1w"):
            _touch_nifti(tmp_path / "anat" / f"sub-{sub:02d}_{suffix}.nii.gz")
    manifest = make_manifest(tmp_path, ratios=(0.5, 0.25, 0.25), seed=1)
    split_of: dict[str, set[str]] = {}
    for entry in manifest.entries:
        split_of.setdefault(entry.subject, set()).add(entry.split)
    assert sorted(split_of) == [f"sub-{sub:02d}" for sub in range(1, 7)]
    assert all(len(splits) == 1 for splits in split_of.values())


def test_scan_names_a_damaged_file_in_a_series_folder(tmp_path):
    _series(tmp_path / "p1" / "series1", 4)
    stub = tmp_path / "p1" / "series1" / "IM0002"
    stub.write_bytes(stub.read_bytes()[:200])  # cut inside its header: no SeriesInstanceUID left
    with pytest.raises(FaganError, match=r"IM0002 beside a series of 3 files has no SeriesInstanceUID"):
        scan_volumes(tmp_path)


def test_scan_refuses_a_folder_mixing_a_series_with_other_dicom(tmp_path):
    _series(tmp_path / "mixed", 2, uid="1.2.3")
    write_slice(
        tmp_path / "mixed" / "other.dcm", np.ones((4, 4), np.uint16), position=(0, 0, 0), series_uid="9.9"
    )
    with pytest.raises(FaganError, match="own folder"):
        scan_volumes(tmp_path)


def test_manifest_never_puts_a_subject_in_two_splits(tree):
    manifest = make_manifest(tree, ratios=(0.5, 0.25, 0.25), seed=3)
    assert len(manifest.entries) == 8  # derivatives/sub-02 is skipped
    split_of: dict[str, set[str]] = {}
    for entry in manifest.entries:
        split_of.setdefault(entry.subject, set()).add(entry.split)
    assert all(len(splits) == 1 for splits in split_of.values())
    assert split_of.keys() == {"sub-01", "patientA", "patientB", "patientC", "loose_volume"}
    assert all(manifest.subjects(s) for s in SPLITS)  # every split gets a subject
    assert manifest.entries == make_manifest(tree, ratios=(0.5, 0.25, 0.25), seed=3).entries


def _subject_tree(root: Path, n: int) -> Path:
    for i in range(n):
        _touch_nifti(root / f"s{i:02d}" / "a.nii.gz")
        _touch_nifti(root / f"s{i:02d}" / "b.nii.gz")
    return root


def test_ratios_decide_subject_counts(tmp_path):
    manifest = make_manifest(_subject_tree(tmp_path, 20), ratios=(0.6, 0.2, 0.2))
    assert {s: len(manifest.subjects(s)) for s in SPLITS} == {"train": 12, "val": 4, "test": 4}
    assert manifest.counts() == {"train": 24, "val": 8, "test": 8}
    only_train = make_manifest(tmp_path, ratios=(1, 0, 0))
    assert only_train.counts() == {"train": 40, "val": 0, "test": 0}


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    ratios=st.tuples(st.floats(0.01, 1), st.floats(0, 1), st.floats(0, 1)),
)
def test_any_seed_and_ratios_keep_subjects_whole(tmp_path_factory, seed, ratios):
    root = tmp_path_factory.getbasetemp() / "hypothesis_subjects"
    if not root.exists():
        _subject_tree(root, 7)
    manifest = make_manifest(root, ratios=ratios, seed=seed)
    assert len(manifest.entries) == 14
    for subject in {e.subject for e in manifest.entries}:
        assert len({e.split for e in manifest.entries if e.subject == subject}) == 1


def test_save_and_load_round_trip_with_relative_paths(tree, tmp_path):
    manifest = make_manifest(tree, seed=1)
    path = tree / "manifest.json"
    manifest.save(path)
    document = json.loads(path.read_text())
    assert document["format"] == "fagan-manifest" and document["version"] == 1
    assert all(not Path(e["path"]).is_absolute() for e in document["entries"])
    moved = tmp_path / "moved"
    shutil.move(tree, moved)  # the data and its manifest move together
    loaded = Manifest.load(moved / "manifest.json")
    assert [(e.subject, e.split) for e in loaded.entries] == [(e.subject, e.split) for e in manifest.entries]
    for split in SPLITS:
        assert [p.relative_to(moved) for p in loaded.paths(split)] == [
            p.relative_to(tree) for p in manifest.paths(split)
        ]
        assert all(p.exists() for p in loaded.paths(split))
    assert loaded.seed == 1 and loaded.ratios == (0.8, 0.1, 0.1)


def test_an_entry_may_name_its_anatomy(tree, tmp_path):
    manifest = make_manifest(tree, seed=1, anatomy="knee")
    entries = [
        ManifestEntry(e.path, e.subject, e.split, None if i == 0 else e.anatomy)
        for i, e in enumerate(manifest.entries)
    ]
    path = tmp_path / "m.json"
    Manifest(entries).save(path)
    document = json.loads(path.read_text())
    assert "anatomy" not in document["entries"][0] and document["entries"][1]["anatomy"] == "knee"
    loaded = Manifest.load(path)
    assert [e.anatomy for e in loaded.entries] == [None] + ["knee"] * (len(entries) - 1)
    assert len(loaded.anatomies("train")) == len(loaded.paths("train"))
    document["entries"][1]["anatomy"] = 3
    path.write_text(json.dumps(document))
    with pytest.raises(FaganError, match="entry 1 has anatomy 3"):
        Manifest.load(path)


def test_save_refuses_to_overwrite(tree, tmp_path):
    manifest = make_manifest(tree)
    manifest.save(tmp_path / "m.json")
    with pytest.raises(FileExistsError, match="overwrite"):
        manifest.save(tmp_path / "m.json")
    manifest.save(tmp_path / "m.json", overwrite=True)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "other"}', "not a fagan manifest"),
        ('{"format": "fagan-manifest", "version": 99, "entries": []}', "version 99"),
        ('{"format": "fagan-manifest", "version": 1}', "no 'entries'"),
        (
            '{"format": "fagan-manifest", "version": 1, "entries": [{"path": "a.nii"}]}',
            "lacks subject, split",
        ),
        (
            '{"format": "fagan-manifest", "version": 1, "entries": '
            '[{"path": "a.nii", "subject": "s", "split": "holdout"}]}',
            "unknown split",
        ),
    ],
)
def test_load_refuses_bad_manifests(tmp_path, content, message):
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(FaganError, match=message):
        Manifest.load(path)


def test_manifest_refuses_a_subject_in_two_splits():
    with pytest.raises(FaganError, match="both train and test"):
        Manifest([ManifestEntry("a.nii", "s1", "train"), ManifestEntry("b.nii", "s1", "test")])


def test_manifest_refuses_one_file_in_two_splits(tmp_path):
    (tmp_path / "d").mkdir()
    path = tmp_path / "m.json"
    entries = [
        {"path": "d/t1.nii.gz", "subject": "s1", "split": "train"},
        {"path": "d/../d/t1.nii.gz", "subject": "s2", "split": "test"},
    ]
    path.write_text(json.dumps({"format": "fagan-manifest", "version": 1, "entries": entries}))
    with pytest.raises(FaganError, match=r"t1\.nii\.gz is listed in both train \(subject 's1'\) and test"):
        Manifest.load(path)
    # Twice in one split would weigh it double in training, and in a test split's means.
    with pytest.raises(FaganError, match=r"d/t1\.nii\.gz is listed twice in test"):
        Manifest(
            [ManifestEntry("d/t1.nii.gz", "s1", "test"), ManifestEntry("d/../d/t1.nii.gz", "s1", "test")]
        )


def test_bad_ratios_roots_and_splits(tmp_path, tree):
    for ratios in [(0.8, 0.2), (0, 0.5, 0.5), (0.8, -0.1, 0.3)]:
        with pytest.raises(FaganError, match="ratios"):
            make_manifest(tree, ratios=ratios)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaganError, match="no volumes found"):
        make_manifest(tmp_path / "empty")
    with pytest.raises(FaganError, match="not a folder"):
        make_manifest(tree / "loose_volume.nii.gz")
    with pytest.raises(FaganError, match="unknown split"):
        make_manifest(tree).paths("training")


def test_resolve_volumes_accepts_a_manifest_a_folder_or_a_file(tree, tmp_path):
    manifest = make_manifest(tree)
    manifest.save(tmp_path / "m.json")
    assert resolve_volumes(tmp_path / "m.json", "train") == manifest.paths("train")
    assert resolve_volumes(tree, "test") == scan_volumes(tree)
    assert resolve_volumes(tree / "patientB" / "series1", "test") == [tree / "patientB" / "series1"]
    assert resolve_volumes(tree / "loose_volume.nii.gz", "test") == [tree / "loose_volume.nii.gz"]


def _visits_tree(root: Path) -> Path:
    """Six people, two of them seen twice, as first-level folders ``p01_visit1``, ``p01_visit2``..."""
    for name in ("p01_visit1", "p01_visit2", "p02_visit1", "p03_visit1", "p03_visit2", "p04_visit1"):
        _touch_nifti(root / name / "t1.nii.gz")
    _touch_nifti(root / "p05_visit1.nii.gz")
    _touch_nifti(root / "p06_visit1.nii.gz")
    return root


def test_a_subject_pattern_names_one_person_across_visits(tmp_path):
    root = _visits_tree(tmp_path)
    grouped = subject_pattern(r"^(p\d+)_visit")
    assert subject_of(root / "p01_visit2" / "t1.nii.gz", root, grouped) == "p01"
    assert subject_of(root / "p05_visit1.nii.gz", root, grouped) == "p05"
    assert subject_of(root / "p01_visit2" / "t1.nii.gz", root, subject_pattern(r"p\d+")) == "p01"  # no group
    assert subject_of(root / "p01_visit2" / "t1.nii.gz", root, subject_pattern(r"^q")) is None
    for seed in range(8):
        manifest = make_manifest(root, ratios=(0.5, 0.25, 0.25), seed=seed, subject=r"^(p\d+)_visit")
        assert sorted(manifest.subjects("train") + manifest.subjects("val") + manifest.subjects("test")) == [
            f"p0{i}" for i in range(1, 7)
        ]
        split_of = {e.path: e.split for e in manifest.entries}
        assert split_of[str(root / "p01_visit1/t1.nii.gz")] == split_of[str(root / "p01_visit2/t1.nii.gz")]
    assert manifest.extra == {"subject_pattern": r"^(p\d+)_visit"}
    assert Manifest.load(_saved(manifest, tmp_path / "m.json")).extra == manifest.extra


def _saved(manifest: Manifest, path: Path) -> Path:
    manifest.save(path)
    return path


def test_a_subject_pattern_must_name_every_volume_and_be_a_pattern(tmp_path):
    root = _visits_tree(tmp_path)
    _touch_nifti(root / "phantom" / "qa.nii.gz")
    with pytest.raises(FaganError, match=r"names no subject in 1 of 9 volume paths \(phantom/qa.nii.gz\)"):
        make_manifest(root, subject=r"^(p\d+)_")
    with pytest.raises(FaganError, match="is not a regular expression"):
        make_manifest(root, subject=r"^(p\d+")


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    new_seed=st.integers(0, 2**16),
    before=st.integers(1, 12),
    added=st.integers(1, 12),
    ratios=st.sampled_from([(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.5, 0.5, 0.0), (1, 0, 0)]),
)
def test_a_kept_split_never_moves_a_subject_and_deals_new_ones_by_the_ratios(
    tmp_path_factory, seed, new_seed, before, added, ratios
):
    root = tmp_path_factory.mktemp("grown")
    _subject_tree(root, before)
    first = make_manifest(root, ratios=ratios, seed=seed)
    for i in range(before, before + added):
        _touch_nifti(root / f"s{i:02d}" / "a.nii.gz")
    grown = make_manifest(root, ratios=ratios, seed=new_seed, keep=first)
    was = {e.path: e.split for e in first.entries}
    assert all(was[e.path] == e.split for e in grown.entries if e.path in was)
    # each new subject went to the split furthest below its share, so no split is more than one
    # subject beyond what the ratios give the kept subjects plus the new ones
    n = before + added
    weights = np.asarray(ratios) / sum(ratios)
    for split, weight in zip(SPLITS, weights, strict=True):
        count, count_before = len(grown.subjects(split)), len(first.subjects(split))
        assert count == count_before if weight == 0 else count <= max(count_before, np.ceil(weight * n) + 1)


def test_a_kept_split_follows_a_subject_renamed_by_a_pattern_and_keeps_anatomy(tmp_path):
    root = _visits_tree(tmp_path)
    named = make_manifest(root, seed=2, subject=r"^(p\d+)_visit", anatomy="brain")
    regrouped = make_manifest(root, seed=5, subject=r"^p\d+_visit\d", keep=named)
    by_path = {e.path: e for e in named.entries}
    for entry in regrouped.entries:  # each visit is now a subject, in the split its person had
        assert entry.split == by_path[entry.path].split and entry.anatomy == "brain"


def test_a_kept_split_that_tore_a_subject_apart_is_refused(tmp_path):
    root = _visits_tree(tmp_path)
    by_visit = make_manifest(root, ratios=(0.5, 0.5, 0))
    splits = {e.subject: e.split for e in by_visit.entries}
    torn = splits["p01_visit1"] != splits["p01_visit2"] or splits["p03_visit1"] != splits["p03_visit2"]
    if not torn:  # make it so: the old rule put one person's visits in two splits
        entries = [
            ManifestEntry(e.path, e.subject, "val" if e.subject == "p01_visit2" else "train", e.anatomy)
            for e in by_visit.entries
        ]
        by_visit = Manifest(entries)
    with pytest.raises(FaganError, match=r"put the volumes of subject 'p0[13]' in train and val"):
        make_manifest(root, subject=r"^(p\d+)_visit", keep=by_visit)


def test_symbolic_links_are_named_where_they_sit_not_where_they_point(tmp_path):
    """A DataLad / git-annex dataset: every file a link into one store under .git/annex."""
    root = tmp_path / "ds"
    store = root / ".git" / "annex" / "objects"
    for sub in ("sub-01", "sub-02", "sub-03"):
        _touch_nifti(store / f"MD5E-{sub}.nii.gz")
        (root / sub / "anat").mkdir(parents=True)
        (root / sub / "anat" / f"{sub}_T1w.nii.gz").symlink_to(store / f"MD5E-{sub}.nii.gz")
    manifest = make_manifest(root, ratios=(1, 0, 0))
    assert sorted(e.subject for e in manifest.entries) == ["sub-01", "sub-02", "sub-03"]
    assert all("/anat/sub-0" in e.path for e in manifest.entries)
    saved = Manifest.load(_saved(manifest, tmp_path / "m.json"))
    assert (
        json.loads((tmp_path / "m.json").read_text())["entries"][0]["path"]
        == "ds/sub-01/anat/sub-01_T1w.nii.gz"
    )
    assert [e.subject for e in make_manifest(root, subject=r"(sub-\d+)_T1w").entries] == [
        e.subject for e in saved.entries
    ]


def test_a_pattern_match_loses_a_volume_suffix(tmp_path):
    for visit in ("baseline", "followup"):
        for person in ("p01", "p02"):
            _touch_nifti(tmp_path / visit / f"{person}.nii.gz")
    manifest = make_manifest(tmp_path, subject=r"^[^/]+/([^/]+)")
    assert sorted({e.subject for e in manifest.entries}) == ["p01", "p02"]


def test_a_kept_split_must_keep_someone_and_passes_on_its_one_anatomy(tmp_path):
    root = _visits_tree(tmp_path / "a")
    named = make_manifest(root, seed=2, subject=r"^(p\d+)_visit", anatomy="brain")
    _touch_nifti(root / "p09_visit1" / "t1.nii.gz")
    grown = make_manifest(root, subject=r"^(p\d+)_visit", keep=named)
    assert {e.anatomy for e in grown.entries} == {"brain"}  # the new volume too
    moved = tmp_path / "b"
    root.rename(moved)  # moved, and named by another rule: nothing to keep
    with pytest.raises(FaganError, match="none of the 6 subjects of the manifest to keep is found"):
        make_manifest(moved, subject=r"^(p\d+_visit\d)", keep=named)
    with pytest.raises(FaganError, match=r"the subject_pattern of old.json '\(p' is not a regular"):
        make_manifest(moved, subject="(p", subject_source="the subject_pattern of old.json")
