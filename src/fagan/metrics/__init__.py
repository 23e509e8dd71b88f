"""Image quality metrics (per image, explicit data range)."""

from fagan.metrics.image import psnr, ssim

__all__ = ["psnr", "ssim"]
