"""Pixel loss: mean squared error, as in the FA-GAN paper (L1 selectable, as in ESRGAN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fagan import FaganError

PIXEL_LOSSES: tuple[str, ...] = ("mse", "l1")


class PixelLoss(nn.Module):
    """Mean over all pixels of ``(sr - hr)^2`` (``"mse"``) or ``|sr - hr|`` (``"l1"``).

    ``(B, C, H, W), (B, C, H, W) -> ()``.
    """

    def __init__(self, kind: str = "mse") -> None:
        super().__init__()
        if kind not in PIXEL_LOSSES:
            raise FaganError(f"unknown pixel loss {kind!r}; choose one of {', '.join(PIXEL_LOSSES)}")
        self.kind = kind

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if self.kind == "l1":
            return F.l1_loss(sr, hr)
        return F.mse_loss(sr, hr)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
