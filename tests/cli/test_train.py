"""``fagan train``, through the real command line."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from fagan.cli import main
from fagan.models.release import load_release
from fagan.training import save_config
from fagan.training.logs import read_jsonl

# tests/ itself, so that this folder (which is no package) shares the helpers of tests/losses
# and tests/training however pytest is started.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from losses.vgg_helpers import write_test_vgg19  # noqa: E402
from training.tiny import tiny_config  # noqa: E402


@pytest.fixture
def tiny_yaml(tmp_path):
    return save_config(tiny_config("schedule.steps=2", "schedule.checkpoint_every=2"), tmp_path / "tiny.yaml")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("fagan: error: ")
    return err[0]


def test_missing_config_file_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert "config file not found" in _error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_unknown_set_key_is_a_one_line_error(tiny_yaml, tmp_path, capsys):
    argv = ["train", "--config", str(tiny_yaml), "--out", str(tmp_path / "run"), "--set", "schedule.stpes=5"]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "unknown config key schedule.stpes" in line and "valid keys at schedule: steps" in line


def test_offline_perceptual_loss_stops_before_the_first_step(tiny_yaml, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    run = tmp_path / "run"
    argv = ["train", "--config", str(tiny_yaml), "--out", str(run), "--device", "cpu"]
    assert main([*argv, "--set", "loss.perceptual_weight=1"]) == 2
    line = _error_line(capsys)
    assert (
        "--vgg-weights PATH" in line and str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in line
    )
    assert not (run / "losses.jsonl").exists() and not (run / "checkpoints").exists()


def test_train_with_vgg_weights_then_resume_then_export(tiny_yaml, tmp_path, monkeypatch, capsys):
    vgg = write_test_vgg19(tmp_path / "vgg19.pth")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", pytest.fail)
    run = tmp_path / "run"
    perceptual = ["--set", "loss.perceptual_weight=1", "--set", "loss.perceptual_layer=relu2_2"]
    argv = [
        "train",
        "--config",
        str(tiny_yaml),
        "--out",
        str(run),
        "--device",
        "cpu",
        "--vgg-weights",
        str(vgg),
    ]
    assert main([*argv, *perceptual, "--set", "schedule.warmup_steps=0"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run / 'release.safetensors'}"
    records = read_jsonl(run / "losses.jsonl")
    assert len(records) == 2 and all(r["perceptual"] > 0 for r in records)

    assert main(argv) == 2  # the directory holds a run
    assert "--resume" in _error_line(capsys)

    resume = ["train", "--resume", str(run), "--vgg-weights", str(vgg), "--device", "cpu"]
    assert main([*resume, "--set", "schedule.steps=3"]) == 0
    assert [r["step"] for r in read_jsonl(run / "losses.jsonl")] == [1, 2, 3]
    capsys.readouterr()

    out = tmp_path / "w.safetensors"
    assert main(["train", "--export", str(run), "--out", str(out)]) == 0
    _, meta = load_release(out, scale=4)
    assert meta["steps"] == "3" and meta["ema"] == "true"


def test_argument_combinations_are_checked(tiny_yaml, tmp_path, capsys):
    assert main(["train"]) == 2
    assert "give --config FILE" in _error_line(capsys)
    assert main(["train", "--export", str(tmp_path)]) == 2
    assert "needs --out" in _error_line(capsys)
    assert main(["train", "--resume", str(tmp_path), "--config", str(tiny_yaml)]) == 2
    assert "drop --config" in _error_line(capsys)
    assert main(["train", "--resume", str(tmp_path / "none")]) == 2
    assert "config.yaml not found" in _error_line(capsys)


def test_tensorboard_without_the_package_is_a_clear_error(tiny_yaml, tmp_path, capsys):
    try:
        import tensorboard  # noqa: F401

        pytest.skip("tensorboard is installed here")
    except ImportError:
        pass
    argv = [
        "train",
        "--config",
        str(tiny_yaml),
        "--out",
        str(tmp_path / "run"),
        "--device",
        "cpu",
        "--tensorboard",
    ]
    assert main(argv) == 2
    assert "pip install tensorboard" in _error_line(capsys)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished 2-step run (checkpoint at step 2) to export and resume; copy it before changing it."""
    folder = tmp_path_factory.mktemp("tiny_run")
    config = save_config(
        tiny_config("schedule.steps=2", "schedule.checkpoint_every=2", "schedule.warmup_steps=0"),
        folder / "tiny.yaml",
    )
    run = folder / "run"
    assert main(["train", "--config", str(config), "--out", str(run), "--device", "cpu"]) == 0
    return run


def _copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def test_export_refuses_an_existing_file_unless_overwrite(tiny_run, tmp_path, capsys):
    victim = tmp_path / "victim.nii.gz"
    victim.write_bytes(b"precious")
    assert main(["train", "--export", str(tiny_run), "--out", str(victim)]) == 2
    assert "exists; pass --overwrite" in _error_line(capsys)
    assert victim.read_bytes() == b"precious"
    config = (tiny_run / "config.yaml").read_bytes()
    for own in (tiny_run / "config.yaml", tiny_run / "checkpoints" / "step_00000002.pt"):
        assert main(["train", "--export", str(tiny_run), "--out", str(own), "--overwrite"]) == 2
        assert "belongs to the run itself" in _error_line(capsys)
    assert (tiny_run / "config.yaml").read_bytes() == config
    assert main(["train", "--export", str(tiny_run), "--out", str(victim), "--overwrite"]) == 0
    assert load_release(victim)[1]["steps"] == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["victim.nii.gz"]  # no temporary file left
    capsys.readouterr()
    assert main(["train", "--config", "x.yaml", "--out", str(tmp_path / "r"), "--overwrite"]) == 2
    assert "--overwrite applies to --export and --average only" in _error_line(capsys)


def test_a_new_run_refuses_a_folder_with_other_files(tiny_yaml, tmp_path, capsys):
    folder = tmp_path / "userdir"
    folder.mkdir()
    (folder / "config.yaml").write_text("mine")
    (folder / "release.safetensors").write_text("mine")
    assert main(["train", "--config", str(tiny_yaml), "--out", str(folder), "--device", "cpu"]) == 2
    assert "is not empty (config.yaml, release.safetensors) and holds no training run" in _error_line(capsys)
    assert sorted(p.read_text() for p in folder.iterdir()) == ["mine", "mine"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("data.degradation=foo", "unknown degradation 'foo'"),
        ("model.overrides.chanels=16", "unknown generator option(s) chanels"),
        (f"data.manifest={Path('/nonexistent/m.json')}", "training data not found"),
    ],
)
def test_a_run_that_fails_its_checks_leaves_no_folder_behind(tiny_yaml, tmp_path, capsys, setting, message):
    run = tmp_path / "new" / "run"
    argv = ["train", "--config", str(tiny_yaml), "--device", "cpu", "--set", setting]
    assert main([*argv, "--out", str(run)]) == 2
    assert message in _error_line(capsys)
    assert not run.exists()
    empty = tmp_path / "empty"  # a folder the user made is kept, and left as it was
    empty.mkdir()
    assert main([*argv, "--out", str(empty)]) == 2
    assert message in _error_line(capsys)
    assert empty.is_dir() and not list(empty.iterdir())


def test_a_4d_volume_trains_on_each_of_its_volumes(tiny_yaml, tmp_path, capsys):
    import nibabel as nib
    import numpy as np

    volume = tmp_path / "f.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((40, 40, 3, 2), np.float32), np.eye(4)), volume)
    argv = ["train", "--config", str(tiny_yaml), "--data", str(volume), "--out", str(tmp_path / "run")]
    assert main([*argv, "--device", "cpu"]) == 0
    assert (tmp_path / "run" / "release.safetensors").is_file()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("model.overrides.channels=32", "model.overrides.channels is 32 but the run has 16"),
        ("model.scale=2", "model.scale is 2 but the run has 4"),
        ("schedule.steps=1", "schedule.steps: 1 is below the 2 steps"),
    ],
)
def test_resume_refuses_another_architecture_or_fewer_steps(tiny_run, tmp_path, capsys, setting, message):
    run = _copy_run(tiny_run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "train.log"}
    assert main(["train", "--resume", str(run), "--device", "cpu", "--set", setting]) == 2
    assert message in _error_line(capsys)
    after = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "train.log"}
    assert after == before


def test_resume_says_which_settings_it_changes(tiny_run, tmp_path, caplog):
    run = _copy_run(tiny_run, tmp_path / "run")
    argv = ["train", "--resume", str(run), "--device", "cpu", "--set", "schedule.steps=3"]
    with caplog.at_level("INFO", logger="fagan.training.trainer"):
        assert main([*argv, "--set", "optim.lr=0.00005"]) == 0
    said = [r.getMessage() for r in caplog.records if "changed settings" in r.getMessage()]
    assert len(said) == 1 and "optim.lr: 0.0001 -> 5e-05" in said[0] and "schedule.steps: 2 -> 3" in said[0]
    assert "data." not in said[0]  # only what differs


def test_resume_does_not_read_init_weights_again(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(tiny_run / "release.safetensors", "init.safetensors")
    config = save_config(
        tiny_config("schedule.steps=2", "schedule.checkpoint_every=2", "model.init_weights=init.safetensors"),
        tmp_path / "init.yaml",
    )
    assert main(["train", "--config", str(config), "--out", "run", "--device", "cpu"]) == 0
    Path("init.safetensors").unlink()
    monkeypatch.chdir(tmp_path / "run")  # another folder: the relative path means nothing here
    assert main(["train", "--resume", ".", "--device", "cpu", "--set", "schedule.steps=3"]) == 0
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "losses.jsonl")] == [1, 2, 3]


def test_average_writes_the_mean_of_two_releases(tmp_path, capsys):
    from fagan.models import build_generator
    from fagan.models.release import save_release

    tiny = dict(channels=8, lffb_blocks=1, path_channels=4, residual_blocks=1, head_kernel=3, reduction=4)
    a, b = (
        save_release(tmp_path / f"{n}.safetensors", build_generator("fagan", 2, **tiny), "fagan")
        for n in "ab"
    )
    out = tmp_path / "soup.safetensors"
    assert main(["train", "--average", str(a), str(b), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    first, second = (load_release(p)[0].state_dict() for p in (a, b))
    for name, value in load_release(out)[0].state_dict().items():
        assert torch.allclose(value, (first[name] + second[name]) / 2, atol=2e-3), name
    assert main(["train", "--average", str(a), str(b)]) == 2
    assert "needs --out" in _error_line(capsys)
    assert main(["train", "--average", str(a), str(b), "--out", str(out)]) == 2
    assert "pass --overwrite" in _error_line(capsys)
    assert main(["train", "--average", str(a), "--out", str(tmp_path / "one.safetensors")]) == 2
    assert "at least two" in _error_line(capsys)
    assert main(["train", "--average", str(a), str(b), "--config", "x.yaml", "--out", str(out)]) == 2
    assert "--average takes only" in _error_line(capsys)


def _three_subjects_here(folder: Path, monkeypatch) -> None:
    """Three one-volume subjects in ``folder/data``, split one each by ``folder/m.json``; the
    working directory becomes ``folder``."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(0)
    for k in range(3):
        (folder / "data" / f"p{k}").mkdir(parents=True)
        volume = nib.Nifti1Image(rng.random((40, 40, 3), np.float32), np.eye(4))
        nib.save(volume, folder / "data" / f"p{k}" / "t1.nii")
    monkeypatch.chdir(folder)
    assert main(["prepare", "data", "--out", "m.json", "--ratios", "1", "1", "1"]) == 0


@pytest.mark.parametrize("how", ["set", "config"])
def test_a_relative_manifest_is_stored_absolute_so_a_run_resumes_from_anywhere(
    tiny_yaml, tmp_path, monkeypatch, how
):
    import yaml

    _three_subjects_here(tmp_path, monkeypatch)
    argv = ["train", "--out", "run", "--device", "cpu"]
    if how == "set":
        argv += ["--config", str(tiny_yaml), "--set", "data.manifest=m.json"]
    else:
        config = yaml.safe_load(tiny_yaml.read_text())
        config["data"]["manifest"] = "m.json"
        Path("rel.yaml").write_text(yaml.safe_dump(config))
        argv += ["--config", "rel.yaml"]
    assert main(argv) == 0
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["manifest"]
    assert stored == str(tmp_path / "m.json")
    monkeypatch.chdir(tmp_path / "run")  # another folder, where m.json would not be found
    assert main(["train", "--resume", ".", "--device", "cpu", "--set", "schedule.steps=3"]) == 0
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "losses.jsonl")][-1] == 3


def test_weights_know_their_training_volumes_and_evaluate_warns_on_them(
    tiny_yaml, tmp_path, monkeypatch, capsys
):
    from fagan.data.fingerprint import fingerprint
    from fagan.data.manifest import Manifest
    from fagan.models.release import read_metadata, trained_fingerprints

    _three_subjects_here(tmp_path, monkeypatch)
    train = [e.path for e in Manifest.load("m.json").entries if e.split == "train"]
    argv = ["train", "--config", str(tiny_yaml), "--data", "m.json", "--out", "run", "--device", "cpu"]
    assert main(argv) == 0
    assert trained_fingerprints(read_metadata("run/release.safetensors")) == {fingerprint(p) for p in train}
    assert main(["train", "--export", "run", "--out", "exported.safetensors"]) == 0
    assert trained_fingerprints(read_metadata("exported.safetensors")) == {fingerprint(p) for p in train}
    capsys.readouterr()
    argv = ["evaluate", "--weights", "exported.safetensors", "--data", "m.json", "--device", "cpu"]
    assert main([*argv, "--split", "train", "--out", "on_train"]) == 0
    err = capsys.readouterr().err
    assert "exported.safetensors was trained on 1 of these 1 volumes (t1); their scores are not held" in err
    assert main([*argv, "--split", "test", "--out", "on_test"]) == 0
    assert "trained on" not in capsys.readouterr().err
    # a renamed copy is still recognised; an average is marked with every input's volumes
    shutil.copy(train[0], tmp_path / "copy.nii")
    assert fingerprint(tmp_path / "copy.nii") == fingerprint(train[0])
    shutil.copy("exported.safetensors", "other.safetensors")
    argv = ["train", "--average", "exported.safetensors", "other.safetensors", "--out", "avg.safetensors"]
    assert main(argv) == 0
    assert trained_fingerprints(read_metadata("avg.safetensors")) == {fingerprint(p) for p in train}
