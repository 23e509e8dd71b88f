"""``fagan prepare``, through the real command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fagan.cli import main
from fagan.data.io import write_nifti
from fagan.data.manifest import Manifest


@pytest.fixture
def data_dir(tmp_path):
    """Ten subjects, one tiny NIfTI volume each."""
    root = tmp_path / "data"
    for i in range(10):
        (root / f"subj{i}").mkdir(parents=True)
        write_nifti(root / f"subj{i}" / "t1.nii.gz", np.arange(8.0).reshape(2, 2, 2) + i, np.eye(4))
    return root


def test_prepare_writes_a_manifest_and_prints_a_summary(data_dir, tmp_path, capsys):
    out = tmp_path / "manifest.json"
    assert (
        main(["prepare", str(data_dir), "--out", str(out), "--ratios", "0.6", "0.2", "0.2", "--seed", "4"])
        == 0
    )
    summary = capsys.readouterr().out
    assert "10 volumes from 10 subjects" in summary
    assert "train 6" in summary and "val 2" in summary and "test 2" in summary
    manifest = Manifest.load(out)
    assert manifest.counts() == {"train": 6, "val": 2, "test": 2}
    assert json.loads(out.read_text())["seed"] == 4


def test_prepare_is_deterministic_for_a_seed(data_dir, tmp_path):
    for name in ("a.json", "b.json"):
        assert main(["prepare", str(data_dir), "--out", str(tmp_path / name)]) == 0
    a, b = Manifest.load(tmp_path / "a.json"), Manifest.load(tmp_path / "b.json")
    assert a.entries == b.entries


def test_prepare_refuses_to_overwrite_without_the_flag(data_dir, tmp_path, capsys):
    out = tmp_path / "manifest.json"
    out.write_text("{}")
    assert main(["prepare", str(data_dir), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("fagan: error:") and "--overwrite" in error and error.count("\n") == 1
    assert out.read_text() == "{}"
    assert main(["prepare", str(data_dir), "--out", str(out), "--overwrite"]) == 0
    assert len(Manifest.load(out).entries) == 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ratios", "0", "0.5", "0.5"], "ratios"),
        (["--ratios", "-1", "1", "1"], "ratios"),
    ],
)
def test_prepare_reports_bad_ratios(data_dir, tmp_path, capsys, args, message):
    assert main(["prepare", str(data_dir), "--out", str(tmp_path / "m.json"), *args]) == 2
    assert message in capsys.readouterr().err


def test_prepare_reports_missing_or_empty_folders(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "nope"), "--out", str(tmp_path / "m.json")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["prepare", str(tmp_path / "empty"), "--out", str(tmp_path / "m.json")]) == 2
    assert "no volumes found" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_prepare_names_the_anatomy_of_every_volume(data_dir, tmp_path, capsys):
    out = tmp_path / "knee.json"
    assert main(["prepare", str(data_dir), "--out", str(out), "--anatomy", "knee"]) == 0
    assert "note:" not in capsys.readouterr().out  # one folder per subject: nothing to say
    assert {e["anatomy"] for e in json.loads(out.read_text())["entries"]} == {"knee"}
    assert set(Manifest.load(out).anatomies("test")) == {"knee"}
    for bad in (" ", "head/neck", "all"):
        assert main(["prepare", str(data_dir), "--out", str(tmp_path / "x.json"), "--anatomy", bad]) == 2
        assert f"anatomy {bad!r} cannot name a table" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def _prepare_flat(tmp_path, capsys, names) -> str:
    """``fagan prepare`` of a folder holding the volumes ``names`` directly; what it printed."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in names:
        write_nifti(flat / f"{name}.nii.gz", np.arange(8.0).reshape(2, 2, 2), np.eye(4))
    assert main(["prepare", str(flat), "--out", str(tmp_path / "m.json")]) == 0
    return capsys.readouterr().out


def test_prepare_notes_that_loose_files_are_subjects_of_their_own(tmp_path, capsys):
    printed = _prepare_flat(tmp_path, capsys, ("patient1_T1", "patient1_T2", "patient2_T1"))
    assert "3 volumes from 3 subjects" in printed
    assert "note: 3 volumes lie directly in" in printed and "a folder of their own" in printed


def test_prepare_check_names_every_volume_training_would_stop_on(data_dir, tmp_path, capsys):
    bad = np.arange(8.0).reshape(2, 2, 2)
    bad[0, 0, 0] = np.nan
    (data_dir / "subjNaN").mkdir()
    write_nifti(data_dir / "subjNaN" / "t1.nii.gz", bad, np.eye(4))
    (data_dir / "subjBroken").mkdir()
    (data_dir / "subjBroken" / "t1.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    out = tmp_path / "m.json"
    assert main(["prepare", str(data_dir), "--out", str(out), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 of 12 volumes cannot be used" in err
    assert "subjNaN/t1.nii.gz (1 voxels are NaN" in err and "subjBroken/t1.nii.gz (" in err
    assert not out.exists()
    assert main(["prepare", str(data_dir), "--out", str(out)]) == 0  # without --check: headers only
    for broken in ("subjNaN", "subjBroken"):  # a 4D series is fine: its volumes are trained on
        (data_dir / broken / "t1.nii.gz").unlink()
    cine = np.stack([np.arange(8.0).reshape(2, 2, 2)] * 3, axis=-1)
    write_nifti(data_dir / "subjNaN" / "cine.nii.gz", cine, np.eye(4))
    assert main(["prepare", str(data_dir), "--out", str(out), "--check", "--overwrite"]) == 0


def test_prepare_check_refuses_segmentations_and_names_them_without_it(data_dir, tmp_path, capsys):
    """M&Ms keeps <id>_sa_gt.nii.gz (labels 0-3 in two frames of a 4D file) beside each cine."""
    labels = np.zeros((16, 16, 4, 5), np.float32)
    labels[4:12, 4:12, :, 0], labels[6:10, 6:10, :, 3] = 1, 3
    write_nifti(data_dir / "subj0" / "subj0_sa_gt.nii.gz", labels, np.eye(4))
    out = tmp_path / "m.json"
    assert main(["prepare", str(data_dir), "--out", str(out), "--check"]) == 2
    err = capsys.readouterr().err
    assert "1 of 11 volumes cannot be used: subj0/subj0_sa_gt.nii.gz" in err
    assert "(a label map: 3 integer values, 0, 1, 3)" in err
    assert main(["prepare", str(data_dir), "--out", str(out)]) == 0
    note = capsys.readouterr().out.splitlines()[-1]
    assert note.startswith("note: 1 volume(s) are named like segmentations (subj0/subj0_sa_gt.nii.gz)")


def test_prepare_writes_only_a_json_manifest_and_never_over_a_volume(data_dir, tmp_path, capsys):
    scan = data_dir / "subj0" / "t1.nii.gz"
    before = scan.read_bytes()
    for out in (scan, tmp_path / "manifest.nii.gz", tmp_path / "manifest.txt"):
        assert main(["prepare", str(data_dir), "--out", str(out), "--overwrite"]) == 2
        error = capsys.readouterr().err
        assert "a manifest is a .json file" in error and error.count("\n") == 1
    assert scan.read_bytes() == before
    assert not (tmp_path / "manifest.nii.gz").exists() and not (tmp_path / "manifest.txt").exists()


def test_prepare_keeps_a_flat_bids_folder_by_subject_and_says_when_a_split_is_empty(tmp_path, capsys):
    printed = _prepare_flat(tmp_path, capsys, ("sub-01_T1w", "sub-01_T2w", "sub-02_T1w"))
    assert "3 volumes from 2 subjects" in printed and "lie directly in" not in printed
    assert {e.subject for e in Manifest.load(tmp_path / "m.json").entries} == {"sub-01", "sub-02"}
    assert "note: 2 subjects cannot fill every split: test is empty; fagan evaluate needs a test" in printed


def test_prepare_skips_bids_derivatives_and_says_so(tmp_path, capsys):
    root = tmp_path / "bids"
    for sub in ("sub-01", "sub-02", "sub-03"):
        (root / sub / "anat").mkdir(parents=True)
        write_nifti(root / sub / "anat" / f"{sub}_T1w.nii.gz", np.arange(8.0).reshape(2, 2, 2), np.eye(4))
        (root / "derivatives" / "fmriprep" / sub / "anat").mkdir(parents=True)
        write_nifti(root / "derivatives" / "fmriprep" / sub / "anat" / f"{sub}_desc-preproc_T1w.nii.gz",
                    np.arange(8.0).reshape(2, 2, 2), np.eye(4))  # fmt: skip
    assert main(["prepare", str(root), "--out", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert "3 volumes from 3 subjects" in printed and "note: skipped 1 folder(s)" in printed
    assert "(derivatives)" in printed
    assert main(["prepare", str(root / "derivatives"), "--out", str(tmp_path / "d.json")]) == 0
    assert "3 volumes from 3 subjects" in capsys.readouterr().out  # given as DIR, it is used


def test_prepare_notes_visits_names_subjects_by_a_pattern_and_keeps_a_split(data_dir, tmp_path, capsys):
    for visit in ("p7_visit1", "p7_visit2"):
        (data_dir / visit).mkdir()
        write_nifti(data_dir / visit / "t1.nii.gz", np.arange(8.0).reshape(2, 2, 2), np.eye(4))
    out = tmp_path / "m.json"
    assert main(["prepare", str(data_dir), "--out", str(out)]) == 0
    assert "may be several visits of one person (p7_visit1, p7_visit2)" in capsys.readouterr().out
    pattern = "^(subj[0-9]+|p[0-9]+)"
    assert main(["prepare", str(data_dir), "--out", str(out), "--overwrite", "--subject", pattern,
                 "--ratios", "0.5", "0.25", "0.25"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "12 volumes from 11 subjects" in printed and "several visits" not in printed
    before = {e.path: e.split for e in Manifest.load(out).entries}
    # two more people, and one gone: the kept manifest's ratios and subject rule apply again
    for name in ("subj10", "p8_visit1"):
        (data_dir / name).mkdir()
        write_nifti(data_dir / name / "t1.nii.gz", np.arange(8.0).reshape(2, 2, 2), np.eye(4))
    shutil.rmtree(data_dir / "subj0")
    grown = tmp_path / "grown.json"
    assert main(["prepare", str(data_dir), "--out", str(grown), "--keep", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "13 volumes from 12 subjects" in printed
    assert (
        "kept the splits of 10 subject(s)" in printed
        and "dealt 2 new; 1 of its subjects were not found" in printed
    )
    manifest = Manifest.load(grown)
    assert all(before[e.path] == e.split for e in manifest.entries if e.path in before)
    assert manifest.ratios == (0.5, 0.25, 0.25) and manifest.extra == {"subject_pattern": pattern}
    assert {e.subject for e in manifest.entries if "visit" in Path(e.path).parent.name} == {"p7", "p8"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subject", "^(nobody)"], "--subject '^(nobody)' names no subject in 10 of 10 volume paths"),
        (["--subject", "(subj"], "is not a regular expression"),
        (["--keep", "missing.json"], "--keep missing.json: no such manifest file"),
    ],
)
def test_prepare_refuses_a_bad_subject_rule_or_kept_manifest(data_dir, tmp_path, capsys, args, message):
    out = tmp_path / "m.json"
    assert main(["prepare", str(data_dir), "--out", str(out), *args]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not out.exists()


def test_prepare_notes_first_level_folders_named_like_visits(tmp_path, capsys):
    root = tmp_path / "study"
    for visit in ("baseline", "followup"):
        for person in ("p01", "p02", "p03"):
            (root / visit / person).mkdir(parents=True)
            write_nifti(root / visit / person / "t1.nii.gz", np.arange(8.0).reshape(2, 2, 2), np.eye(4))
    assert main(["prepare", str(root), "--out", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert "subjects named like visits (baseline, followup)" in printed
    assert main(["prepare", str(root), "--out", str(tmp_path / "p.json"), "--subject", "^[^/]+/([^/]+)"]) == 0
    assert "visits" not in capsys.readouterr().out.split("\n", 1)[1]
    assert {e.subject for e in Manifest.load(tmp_path / "p.json").entries} == {"p01", "p02", "p03"}


def test_prepare_names_skipped_folders_at_any_depth(tmp_path, capsys):
    root = tmp_path / "study"
    for site in ("siteA", "siteB"):
        (root / site / "sub-01" / "anat").mkdir(parents=True)
        write_nifti(root / site / "sub-01" / "anat" / "t1.nii.gz", np.arange(8.0).reshape(2, 2, 2), np.eye(4))
        (root / site / "sourcedata" / "sub-01").mkdir(parents=True)
        write_nifti(
            root / site / "sourcedata" / "sub-01" / "t1.nii.gz", np.arange(8.0).reshape(2, 2, 2), np.eye(4)
        )
    assert main(["prepare", str(root), "--out", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert "2 volumes" in printed and "skipped 2 folder(s)" in printed
    assert "siteA/sourcedata, siteB/sourcedata" in printed


def test_the_pattern_a_visit_note_suggests_names_every_person(tmp_path, capsys):
    root = tmp_path / "study"
    for name in ("p01_visit1", "p01_visit2", "p02_visit1", "p13_visit1", "p13_visit2"):
        (root / name).mkdir(parents=True)
        write_nifti(root / name / "t1.nii.gz", np.arange(8.0).reshape(2, 2, 2), np.eye(4))
    assert main(["prepare", str(root), "--out", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert "2 name(s) may be several visits of one person (p01_visit1, p01_visit2)" in printed
    pattern = printed.split("--subject '")[1].split("'")[0]
    assert pattern == "^(p[0-9]+)_"
    assert main(["prepare", str(root), "--out", str(tmp_path / "p.json"), "--subject", pattern]) == 0
    assert "5 volumes from 3 subjects" in capsys.readouterr().out
    # neither splits, contrasts nor plain case numbers are visits
    for names in (("train", "val", "test"), ("T1", "T2", "FLAIR"), ("case_001", "case_002")):
        other = tmp_path / "_".join(names)
        for name in names:
            (other / name).mkdir(parents=True)
            write_nifti(other / name / "t1.nii.gz", np.arange(8.0).reshape(2, 2, 2), np.eye(4))
        assert main(["prepare", str(other), "--out", str(other.with_suffix(".json"))]) == 0
        printed = capsys.readouterr().out
        assert "several visits" not in printed and "named like visits" not in printed
