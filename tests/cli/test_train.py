"""``fagan train``, through the real command line."""

from __future__ import annotations

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
