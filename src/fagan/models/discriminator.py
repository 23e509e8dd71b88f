"""SRGAN's discriminator with spectral normalisation on every weight layer (paper Sec. 2.5)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from fagan.models.config import DiscriminatorConfig


class Discriminator(nn.Module):
    """HR (or SR) slice to one real/fake logit: ``(B, C, H, W) -> (B,)``.

    ``2 * stages`` 3x3 convolutions with LeakyReLU, every second one strided, channels doubling
    at each stride (64 -> 512 with the defaults, as SRGAN); spectral normalisation replaces
    SRGAN's batch normalisation (``spectral_norm=False`` leaves it out, to measure what it
    does). The head (global average pool, 1x1 conv to ``hidden``, LeakyReLU,
    1x1 conv to one logit) works for any input size.
    """

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        config = config or DiscriminatorConfig()
        self.config = config
        act = nn.LeakyReLU(config.negative_slope, inplace=True)

        def norm(conv: nn.Conv2d) -> nn.Module:
            return spectral_norm(conv) if config.spectral_norm else conv

        layers: list[nn.Module] = []
        in_channels, channels = config.in_channels, config.channels
        for stage in range(config.stages):
            out = config.channels * 2**stage
            layers += [norm(nn.Conv2d(in_channels, out, 3, 1, 1)), act]
            layers += [norm(nn.Conv2d(out, out, 3, 2, 1)), act]
            in_channels, channels = out, out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            norm(nn.Conv2d(channels, config.hidden, 1)),
            act,
            norm(nn.Conv2d(config.hidden, 1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten()
