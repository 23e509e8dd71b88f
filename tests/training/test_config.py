"""Training configuration: YAML files, strict keys, --set overrides."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from fagan import FaganError
from fagan.training.config import TrainConfig, from_dict, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _make_configs():
    spec = importlib.util.spec_from_file_location("make_configs", CONFIGS / "make_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_shipped_config_loads_and_is_up_to_date():
    expected = _make_configs().files()
    shipped = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert shipped == sorted(expected)
    for name in shipped:
        assert (CONFIGS / name).read_text() == expected[name], f"{name} is stale: run configs/make_configs.py"
        config = load_config(CONFIGS / name)
        assert f"{config.model.name}_x{config.model.scale}" == name.removesuffix(".yaml").removesuffix(
            "_psnr"
        )
        assert config.adversarial != name.endswith("_psnr.yaml")


def test_overrides_parse_yaml_values_and_reach_free_form_dicts():
    config = load_config(
        CONFIGS / "fagan_x4.yaml",
        [
            "schedule.steps=100",
            "optim.lr=2e-4",
            "model.overrides.channels=32",
            "model.init_weights=null",
            "data.axes=[0, 2]",
            "loss.pixel=l1",
        ],
    )
    assert config.schedule.steps == 100 and config.optim.lr == 2e-4
    assert config.model.overrides == {"channels": 32} and config.data.axes == (0, 2)
    assert config.loss.pixel == "l1" and config.model.init_weights is None


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        (
            "schedule.stpes=1",
            r"unknown config key schedule\.stpes; valid keys at schedule: steps, warmup_steps",
        ),
        ("sched.steps=1", r"unknown config key sched; valid keys at the top level: model, data"),
        ("data.batch_size=many", r"config key data\.batch_size: expected int, got 'many'"),
        ("model.scale=3", r"config key model\.scale: must be one of 2, 4, 8"),
        ("model.name=esrgan", r"unknown generator 'esrgan'; valid: fagan, srgan"),
        ("data.patch_size=30", r"data\.patch_size: must be a positive multiple of the scale 4"),
        ("loss.perceptual_layer=relu9_1", r"loss\.perceptual_layer"),
        ("optim.betas=[0.9]", r"optim\.betas: expected a list of 2 values"),
        ("seed", r"--set expects KEY=VALUE"),
        ("model.name.first=1", r"model\.name is a value, not a section"),
        ("optim.lr=-1e-4", r"config key optim\.lr: must be a finite number of at least 0"),
        ("optim.lr=.nan", r"config key optim\.lr: must be a finite number"),
        ("optim.d_lr=.inf", r"config key optim\.d_lr: must be a finite number"),
        ("optim.lr_gamma=-1", r"config key optim\.lr_gamma: must be a finite number above 0, not -1"),
        ("optim.lr_gamma=0", r"config key optim\.lr_gamma: must be a finite number above 0"),
        ("optim.lr_milestones=[-5]", r"config key optim\.lr_milestones: must be steps of at least 0"),
        ("data.zoom_method=lanczos", r"config key data\.zoom_method: must be one of bicubic, kspace"),
        ("data.contrast_prob=2", r"config key data\.contrast_prob: must lie in \[0, 1\], not 2"),
        ("data.contrast_knots=labels", r"config key data\.contrast_knots: must be one of even, tissue"),
    ],
)
def test_bad_overrides_are_one_clear_error(assignment, message):
    with pytest.raises(FaganError, match=message):
        load_config(CONFIGS / "fagan_x4.yaml", [assignment])


def test_unknown_keys_in_a_file_are_rejected(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  name: fagan\n  sclae: 4\n")
    with pytest.raises(
        FaganError, match=r"unknown config key model\.sclae; valid keys at model: name, scale"
    ):
        load_config(path)
    path.write_text("- a list\n")
    with pytest.raises(FaganError, match="mapping of sections"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_saved_config_round_trips(tmp_path):
    config = load_config(None, ["model.overrides.channels=16", "optim.lr_milestones=[10, 20]"])
    path = save_config(config, tmp_path / "config.yaml")
    assert load_config(path) == config
    assert from_dict(TrainConfig, yaml.safe_load(path.read_text())) == config
    with pytest.raises(Exception, match="frozen|cannot assign"):
        config.seed = 3  # type: ignore[misc]
