"""``fagan evaluate`` and ``fagan experiment`` from the command line."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

import fagan.inference.upscale as upscale_module
from fagan import FaganError
from fagan.cli import main
from fagan.data.io import write_nifti
from fagan.models import build_generator
from fagan.models.release import save_release

from .phantoms import phantom, phantom_manifest

TINY = dict(channels=8, lffb_blocks=1, path_channels=4, residual_blocks=1, head_kernel=3, reduction=4)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    torch.manual_seed(0)
    weights = {}
    for scale in (2, 4):
        weights[scale] = folder / f"tiny_x{scale}.safetensors"
        save_release(weights[scale], build_generator("fagan", scale, **TINY), "fagan")
    return phantom_manifest(folder / "data"), weights, folder


def test_evaluate_writes_per_volume_rows_and_tables(setup, capsys) -> None:
    manifest, weights, folder = setup
    out = folder / "out"
    argv = [
        "evaluate",
        "--weights",
        str(weights[2]),
        str(weights[4]),
        "--data",
        str(manifest),
        "--out",
        str(out),
    ]
    assert main([*argv, "--device", "cpu", "--figures"]) == 0
    printed = capsys.readouterr().out
    assert "| bicubic |" in printed and "| fagan |" in printed
    assert "consistency projection on, self-ensemble off" in printed
    with open(out / "per_volume.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["method"], r["scale"]) for r in rows} == {
        ("bicubic", "2"),
        ("fagan", "2"),
        ("bicubic", "4"),
        ("fagan", "4"),
    }
    assert len(rows) == 8
    assert (out / "tables.md").is_file() and (out / "table1_all.csv").is_file()
    assert (out / "figures" / "subject3_x4.png").is_file()


def test_evaluate_a_scale_without_weights_is_one_clear_line(setup, capsys, monkeypatch) -> None:
    manifest, weights, folder = setup
    code = main(
        [
            "evaluate",
            "--weights",
            str(weights[4]),
            "--scales",
            "2",
            "--data",
            str(manifest),
            "--out",
            str(folder / "x"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no weights for x2" in err
    assert not (folder / "x").exists()
    code = main(["evaluate", "--weights", str(folder / "absent.safetensors"), "--out", str(folder / "y")])
    assert code == 2 and "not found" in capsys.readouterr().err
    monkeypatch.setattr("fagan.models.release.SHIPPED_DIR", folder / "no-weights")
    code = main(["evaluate", "--scales", "8", "--out", str(folder / "z")])
    assert code == 2 and "no shipped" in capsys.readouterr().err


def test_evaluate_fid_without_the_network_is_a_clear_error(setup, capsys, monkeypatch) -> None:
    manifest, weights, folder = setup
    monkeypatch.setattr("fagan.metrics.fid.default_weights", lambda: None)
    code = main(
        [
            "evaluate",
            "--weights",
            str(weights[2]),
            "--data",
            str(manifest),
            "--out",
            str(folder / "f"),
            "--fid",
        ]
    )
    assert code == 2 and "fagan[fid]" in capsys.readouterr().err


def test_experiment_checks_its_arguments_before_training(setup, capsys, monkeypatch) -> None:
    manifest, _, folder = setup
    out = folder / "exp"
    assert main(["experiment", "--out", str(out), "--steps", "0"]) == 2
    assert main(["experiment", "--out", str(out), "--model-set", "nonsense"]) == 2
    assert (
        main(["experiment", "--out", str(out), "--model-set", "width=3", "--no-fid", "--data", str(manifest)])
        == 2
    )
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "KEY=VALUE" in err[1] and "unknown generator option" in err[2]
    monkeypatch.setattr("fagan.metrics.fid.default_weights", lambda: None)
    assert main(["experiment", "--out", str(out), "--data", str(manifest)]) == 2
    assert "fagan[fid]" in capsys.readouterr().err
    assert not (out / "runs").exists()
    assert main(["experiment", "--out", str(out), "--scales", "2", "4", "--patch-size", "30"]) == 2
    assert "--patch-size 30 is not a positive multiple of scale 4" in capsys.readouterr().err
    seen = []

    def fake(out, settings, **kwargs):
        seen.append(settings)
        return SimpleNamespace(tables=[], figures=[], report=f"{out}/report.html")

    monkeypatch.setattr("fagan.evaluation.experiment.run_experiment", fake)
    argv = ["experiment", "--out", str(out), "--scales", "8", "--ablation-scale", "8", "--patch-size", "48"]
    assert main(argv) == 0
    assert seen[0].patch_sizes == {2: 48, 4: 48, 8: 48}


def test_experiment_refuses_data_without_a_subject_split(setup, capsys) -> None:
    manifest, _, folder = setup
    assert main(["experiment", "--out", str(folder / "e2"), "--data", str(manifest.parent), "--no-fid"]) == 2
    assert "manifest JSON" in capsys.readouterr().err


def test_evaluate_names_two_runs_releases_by_their_folders(setup, capsys) -> None:
    manifest, weights, folder = setup
    releases = []
    for run in ("a", "b"):
        (folder / "runs" / run).mkdir(parents=True, exist_ok=True)
        releases.append(folder / "runs" / run / "release.safetensors")
        releases[-1].write_bytes(weights[4].read_bytes())
    out = folder / "two"
    argv = ["evaluate", "--weights", *map(str, releases), "--data", str(manifest), "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    with open(out / "per_volume.csv") as f:
        methods = {r["method"] for r in csv.DictReader(f)}
    assert methods == {"bicubic", "a/release", "b/release"}
    assert main([*argv[:3], str(releases[0]), *argv[3:-1], str(folder / "two_b")]) == 2
    assert "names" in capsys.readouterr().err


def test_evaluate_figures_of_volumes_with_one_file_name_in_two_folders(setup, capsys) -> None:
    _, weights, folder = setup
    data = folder / "same"
    for patient, seed in (("p1", 1), ("p2", 2)):
        (data / patient).mkdir(parents=True, exist_ok=True)
        write_nifti(data / patient / "t1.nii.gz", phantom((40, 40, 3), seed), np.eye(4), overwrite=True)
    out = folder / "same_out"
    argv = ["evaluate", "--weights", str(weights[4]), "--data", str(data), "--out", str(out), "--figures"]
    assert main([*argv, "--device", "cpu"]) == 0
    assert {p.name for p in (out / "figures").iterdir()} == {"p1_t1_x4.png", "p2_t1_x4.png"}
    with open(out / "per_volume.csv") as f:
        assert {r["volume"] for r in csv.DictReader(f)} == {"p1/t1", "p2/t1"}


def test_evaluate_scores_a_4d_file_as_one_volume_of_its_volumes(setup, monkeypatch) -> None:
    """A cine or diffusion series is one row: each of its volumes is degraded and upscaled on its
    own, and the scores pool them (MSE over all voxels, against the series' range)."""
    _, weights, folder = setup
    bright, dim = phantom((40, 40, 3), 0), phantom((40, 40, 3), 1) * 0.3
    for name, array in (("four", np.stack([bright, dim], axis=-1)), ("v0", bright), ("v1", dim)):
        (folder / name).mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(array, np.eye(4)), folder / name / "f.nii.gz")
    rows = {}
    for name in ("four", "v0", "v1"):
        argv = ["evaluate", "--weights", str(weights[4]), "--data", str(folder / name), "--device", "cpu"]
        assert main([*argv, "--out", str(folder / f"{name}_out")]) == 0
        with open(folder / f"{name}_out" / "per_volume.csv") as f:
            rows[name] = {r["method"]: float(r["psnr"]) for r in csv.DictReader(f)}
    assert set(rows["four"]) == {"bicubic", "fagan"}  # one row per method: the series is one volume
    drawn = []
    monkeypatch.setattr("fagan.evaluation.figures.comparison_figure", lambda hr, *a: drawn.append(hr))
    argv = ["evaluate", "--weights", str(weights[4]), "--data", str(folder / "four"), "--device", "cpu"]
    assert main([*argv, "--out", str(folder / "four_fig"), "--figures"]) == 0
    np.testing.assert_allclose(drawn[0], dim[..., 1], rtol=1e-6)  # the middle slice of the middle volume
    ranges = {"v0": np.ptp(bright), "v1": np.ptp(dim)}
    whole = max(bright.max(), dim.max()) - min(bright.min(), dim.min())
    for method in ("bicubic", "fagan"):
        mse = np.mean([r**2 / 10 ** (rows[v][method] / 10) for v, r in ranges.items()])
        assert rows["four"][method] == pytest.approx(10 * np.log10(whole**2 / mse), abs=1e-3)


def test_evaluate_names_a_file_whose_volume_cannot_be_normalised_after_downsampling(
    setup, capsys, monkeypatch
) -> None:
    """The advice is evaluate's, not upscale's --frame: the file and the scale are named."""
    _, weights, folder = setup
    (folder / "flat").mkdir(exist_ok=True)
    series = np.stack([phantom((40, 40, 3), 0), phantom((40, 40, 3), 1) * 0.3], axis=-1)
    nib.save(nib.Nifti1Image(series, np.eye(4)), folder / "flat" / "f.nii.gz")
    fit = upscale_module.fit_scaling

    def dim_cannot_be_fitted(array):  # the dim volume's LR: as if downsampling had flattened it
        if float(np.max(array)) < 0.5 * float(series.max()):
            raise FaganError("the image is constant (0 everywhere below the 99.5 percentile)")
        return fit(array)

    monkeypatch.setattr(upscale_module, "fit_scaling", dim_cannot_be_fitted)
    out = folder / "flat_out"
    argv = ["evaluate", "--weights", str(weights[4]), "--data", str(folder / "flat"), "--device", "cpu"]
    assert main([*argv, "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "f.nii.gz: after downsampling x4, volume 1 of 2 cannot be normalised" in err
    assert "--frame" not in err and "leave that volume out" in err
    assert not out.exists() or not any(out.iterdir())


def test_evaluate_keeps_its_scores_when_a_figure_cannot_be_written(setup, capsys, monkeypatch) -> None:
    manifest, weights, folder = setup

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("fagan.evaluation.figures.comparison_figure", fail)
    out = folder / "nofig"
    argv = ["evaluate", "--weights", str(weights[4]), "--data", str(manifest), "--out", str(out), "--figures"]
    assert main([*argv, "--device", "cpu"]) == 0
    assert "figure not written (disk full)" in capsys.readouterr().out
    assert (out / "per_volume.csv").is_file() and (out / "tables.md").is_file()


def test_evaluate_leaves_nothing_when_a_test_volume_fails_halfway(setup, capsys, tmp_path) -> None:
    _, weights, _ = setup
    manifest = phantom_manifest(tmp_path / "data")
    bad = phantom((40, 40, 3), 4)
    bad[:2] = np.nan  # the last test subject: read after the first one was scored
    write_nifti(tmp_path / "data" / "subject4.nii.gz", bad, np.eye(4), overwrite=True)
    out = tmp_path / "results" / "ev"
    argv = ["evaluate", "--weights", str(weights[4]), "--data", str(manifest), "--out", str(out)]
    assert main([*argv, "--figures", "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert "x4 subject3: fagan PSNR" in captured.out  # the first volume was scored
    assert captured.err.count("\n") == 1 and "NaN" in captured.err
    assert not (tmp_path / "results").exists()  # no output, no temporary folder, no parent it made


def test_evaluate_replaces_an_earlier_evaluation_only_when_asked(setup, capsys) -> None:
    manifest, weights, folder = setup
    out = folder / "again"
    argv = ["evaluate", "--data", str(manifest), "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--weights", str(weights[2]), str(weights[4]), "--figures"]) == 0
    assert (out / "figures" / "subject3_x4.png").is_file()
    assert main([*argv, "--weights", str(weights[2])]) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--weights", str(weights[2]), "--overwrite"]) == 0
    with open(out / "per_volume.csv") as f:
        assert {r["scale"] for r in csv.DictReader(f)} == {"2"}
    assert not (out / "figures").exists(), "no figure of the earlier evaluation is left"
    (out / "notes.txt").write_text("mine")
    assert main([*argv, "--weights", str(weights[2]), "--overwrite"]) == 2
    assert "holds files fagan evaluate does not write (notes.txt)" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and (out / "per_volume.csv").is_file()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".again")] == []


def test_evaluate_refuses_the_current_folder_as_its_output(setup, capsys, tmp_path, monkeypatch) -> None:
    manifest, weights, _ = setup
    monkeypatch.chdir(tmp_path)  # an empty folder: --out . would be replaced whole
    for out in (".", str(tmp_path.parent)):
        argv = ["evaluate", "--weights", str(weights[4]), "--data", str(manifest), "--out", out]
        assert main(argv) == 2
        assert "holds the current folder" in capsys.readouterr().err
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []


def test_evaluate_makes_a_table_per_anatomy_the_manifest_names(setup, tmp_path) -> None:
    from fagan.data.manifest import Manifest, ManifestEntry

    _, weights, _ = setup
    manifest = phantom_manifest(tmp_path / "data")
    loaded = Manifest.load(manifest)
    named = {"subject3": "knee", "subject4": "brain"}
    Manifest([ManifestEntry(e.path, e.subject, e.split, named.get(e.subject)) for e in loaded.entries]).save(
        manifest, overwrite=True
    )
    out = tmp_path / "ev"
    argv = ["evaluate", "--weights", str(weights[4]), "--data", str(manifest), "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    with open(out / "per_volume.csv") as f:
        assert {(r["volume"], r["anatomy"]) for r in csv.DictReader(f)} == {
            ("subject3", "knee"),
            ("subject4", "brain"),
        }
    tables = (out / "tables.md").read_text()
    assert "knee (1 volume" in tables and "brain (1 volume" in tables


def test_evaluate_names_a_volume_too_small_for_a_scale_before_any_work(setup, capsys, monkeypatch) -> None:
    _, weights, folder = setup
    (folder / "small").mkdir(exist_ok=True)
    nib.save(nib.Nifti1Image(phantom((40, 40, 3), 0), np.eye(4)), folder / "small" / "a_big.nii.gz")
    tiny = phantom((40, 40, 3), 1)[:10, :10]
    nib.save(nib.Nifti1Image(tiny, np.eye(4)), folder / "small" / "b_tiny.nii.gz")
    scored = []
    monkeypatch.setattr(upscale_module, "upscale_batch", lambda *a, **k: scored.append(a))
    out = folder / "small_out"
    argv = ["evaluate", "--weights", str(weights[4]), "--data", str(folder / "small"), "--device", "cpu"]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "b_tiny.nii.gz: its 10x10 slices along axis 2 are too small to score at x4" in err
    assert scored == [] and not out.exists()  # refused before the first volume was upscaled


def test_evaluate_records_what_made_its_numbers_and_refuses_a_split_of_a_folder(
    setup, capsys
) -> None:
    import json

    from fagan.models.release import read_metadata

    manifest, weights, folder = setup
    out = folder / "recorded"
    argv = ["evaluate", "--weights", str(weights[4]), "--data", str(manifest), "--device", "cpu"]
    assert main([*argv, "--out", str(out), "--no-consistency"]) == 0
    record = json.loads((out / "evaluation.json").read_text())
    assert record["weights"] == [
        {"file": str(weights[4].resolve()), "model": "fagan", "scale": 4,
         "tensors_sha256": read_metadata(weights[4])["tensors_sha256"]}
    ]  # fmt: skip
    settings = (record["split"], record["consistency"], record["self_ensemble"], record["axis"])
    assert settings == ("test", False, False, 2)
    with open(out / "per_volume.csv") as f:
        scored = list(dict.fromkeys(r["volume"] for r in csv.DictReader(f)))
    assert [v["name"] for v in record["volumes"]] == scored
    capsys.readouterr()
    one = folder / "vol"
    one.mkdir(exist_ok=True)
    nib.save(nib.Nifti1Image(phantom((40, 40, 3), 0), np.eye(4)), one / "a.nii.gz")
    argv = ["evaluate", "--weights", str(weights[4]), "--data", str(one), "--split", "val"]
    assert main([*argv, "--out", str(folder / "x")]) == 2
    assert "--split chooses among a manifest's splits" in capsys.readouterr().err
    assert not (folder / "x").exists()
    argv = ["evaluate", "--weights", str(weights[4]), "--data", str(manifest), "--subject", "(p)"]
    assert main([*argv, "--out", str(folder / "x")]) == 2
    assert "--subject names subjects in a folder given as --data" in capsys.readouterr().err
    assert not (folder / "x").exists()


def test_evaluate_warns_when_the_scored_planes_hold_thick_voxels(setup, capsys) -> None:
    _, weights, folder = setup
    (folder / "thick").mkdir(exist_ok=True)
    volume = np.stack([phantom((40, 40, 3), 0)[:, :, 0]] * 12, axis=0)[:, :24, :]  # 12 x 24 x 40
    nib.save(nib.Nifti1Image(volume, np.diag([3.0, 1.0, 1.0, 1.0])), folder / "thick" / "t.nii.gz")
    argv = ["evaluate", "--weights", str(weights[4]), "--data", str(folder / "thick"), "--device", "cpu"]
    assert main([*argv, "--out", str(folder / "thick_out"), "--axis", "2"]) == 0
    printed = capsys.readouterr().out
    assert "warning: t has 3 mm voxels along axis 0, in the planes being scored" in printed
    assert "evaluate with --axis 0" in printed


def test_evaluate_takes_subjects_from_the_manifest_and_summarises_over_them(setup, tmp_path) -> None:
    import json

    from fagan.data.manifest import Manifest, ManifestEntry

    _, weights, _ = setup
    manifest = phantom_manifest(tmp_path / "data")
    loaded = Manifest.load(manifest)  # the two test volumes become two visits of one person
    Manifest(
        [ManifestEntry(e.path, "person" if e.split == "test" else e.subject, e.split) for e in loaded.entries]
    ).save(manifest, overwrite=True)
    out = tmp_path / "ev"
    assert main(["evaluate", "--weights", str(weights[4]), "--data", str(manifest), "--out", str(out)]) == 0
    with open(out / "per_volume.csv") as f:
        assert {r["subject"] for r in csv.DictReader(f)} == {"person"}
    assert "2 volumes of 1 subject; mean ± std over subjects" in (out / "tables.md").read_text()
    record = json.loads((out / "evaluation.json").read_text())
    assert [v["subject"] for v in record["volumes"]] == ["person", "person"]
