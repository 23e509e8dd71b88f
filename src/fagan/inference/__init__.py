"""Inference: super-resolving slices and whole volumes with correct geometry."""

from fagan.inference.geometry import in_plane_axes, resampled_affine
from fagan.inference.upscale import pick_device, upscale_batch, upscale_volume

__all__ = ["in_plane_axes", "pick_device", "resampled_affine", "upscale_batch", "upscale_volume"]
