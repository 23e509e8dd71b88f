"""A tiny training configuration for fast tests: small networks, 32-pixel patches, few steps."""

from __future__ import annotations

from fagan.training.config import TrainConfig, load_config

TINY: list[str] = [
    "model.name=fagan",
    "model.scale=4",
    "model.overrides={channels: 16, lffb_blocks: 1, path_channels: 8, residual_blocks: 2}",
    "model.overrides.head_kernel=3",
    "model.overrides.reduction=4",
    "model.discriminator={channels: 8, hidden: 16}",
    "data.patch_size=32",
    "data.batch_size=4",
    "data.val_slices=4",
    "loss.perceptual_weight=0",
    "schedule.steps=6",
    "schedule.warmup_steps=2",
    "schedule.checkpoint_every=3",
    "schedule.validate_every=3",
    "schedule.log_every=1",
]


def tiny_config(*overrides: str) -> TrainConfig:
    """The tiny configuration with further ``KEY=VALUE`` overrides."""
    return load_config(None, [*TINY, *overrides])
