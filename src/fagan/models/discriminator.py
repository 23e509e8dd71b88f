"""SRGAN's discriminator with spectral normalisation on every weight layer (paper Sec. 2.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from fagan.models.config import DiscriminatorConfig

HIGHPASS_GAIN = 10.0  # brings the detail band (a few hundredths) to about the image's range


def highpass(x: torch.Tensor) -> torch.Tensor:
    """``x`` minus its 3x3 local mean (edges replicated): the finest-scale detail of each image."""
    return x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


class Discriminator(nn.Module):
    """HR (or SR) slice to one real/fake logit: ``(B, C, H, W) -> (B,)``.

    ``2 * stages`` 3x3 convolutions with LeakyReLU, every second one strided, channels doubling
    at each stride (64 -> 512 with the defaults, as SRGAN); spectral normalisation replaces
    SRGAN's batch normalisation (``spectral_norm=False`` leaves it out, to measure what it
    does). The head (global average pool, 1x1 conv to ``hidden``, LeakyReLU,
    1x1 conv to one logit) works for any input size.

    ``highpass`` feeds the network ``HIGHPASS_GAIN * (x - mean3x3(x))`` instead of ``x``. At x2,
    SR and HR differ only in zero-mean detail at the finest scale, a small perturbation of the
    intensities that a freshly initialised discriminator responds to almost linearly and then
    averages away: trained alone against bicubic fakes it stays at chance for 500 steps, with the
    high-pass input it separates them within 40 (``benchmarks/discriminator_check.py``).
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
        if self.config.highpass:
            x = HIGHPASS_GAIN * highpass(x)
        return self.head(self.features(x)).flatten()
