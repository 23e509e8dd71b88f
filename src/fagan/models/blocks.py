"""Convolutional building blocks: SRGAN's residual block, the local fusion feature block (LFFB)
and the sub-pixel upsampling stage."""

from __future__ import annotations

import torch
from torch import nn


def conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    """A stride-1 convolution that keeps the spatial size."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class ResidualBlock(nn.Module):
    """SRGAN's residual block: conv3x3 - BN - PReLU - conv3x3 - BN, plus the input.

    ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, channels: int, batch_norm: bool = True) -> None:
        super().__init__()

        def norm() -> nn.Module:
            return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()

        self.body = nn.Sequential(
            conv(channels, channels, 3, bias=not batch_norm),
            norm(),
            nn.PReLU(channels),
            conv(channels, channels, 3, bias=not batch_norm),
            norm(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LocalFusionFeatureBlock(nn.Module):
    """The LFFB (paper Sec. 2.2, Fig. 2): three paths with 3x3, 5x5 and 7x7 kernels.

    Each path has three convolutions and one ReLU. After the first convolution and its ReLU, the
    three paths exchange information: the second convolution of every path sees the
    concatenated outputs of all three first convolutions. The paths' outputs are concatenated
    and fused by a 1x1 convolution, and the block adds its input back.

    ``(B, C, H, W) -> (B, C, H, W)``.
    """

    kernel_sizes: tuple[int, ...] = (3, 5, 7)

    def __init__(self, channels: int, path_channels: int) -> None:
        super().__init__()
        paths = len(self.kernel_sizes)
        self.first = nn.ModuleList(conv(channels, path_channels, k) for k in self.kernel_sizes)
        self.relu = nn.ReLU(inplace=True)
        self.second = nn.ModuleList(conv(paths * path_channels, path_channels, k) for k in self.kernel_sizes)
        self.third = nn.ModuleList(conv(path_channels, path_channels, k) for k in self.kernel_sizes)
        self.fuse = nn.Conv2d(paths * path_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = torch.cat([self.relu(c(x)) for c in self.first], dim=1)
        paths = [third(second(shared)) for second, third in zip(self.second, self.third, strict=True)]
        return x + self.fuse(torch.cat(paths, dim=1))


def icnr_(weight: torch.Tensor, upscale: int = 2) -> torch.Tensor:
    """ICNR initialisation (Aitken et al., 2017) of a sub-pixel convolution's weight, in place.

    The ``upscale**2`` output channels that PixelShuffle folds into one high-resolution channel
    start equal, so the stage begins as a nearest-neighbour upsampling of a convolution and
    produces no checkerboard pattern.
    """
    out_channels, in_channels, kh, kw = weight.shape
    copies = upscale**2
    sub = torch.empty(out_channels // copies, in_channels, kh, kw)
    nn.init.kaiming_normal_(sub, nonlinearity="relu")
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(copies, dim=0))
    return weight


class UpsampleStage(nn.Module):
    """One x2 stage: conv3x3 to 4C channels, PixelShuffle(2), PReLU (as SRGAN).

    ``(B, C, H, W) -> (B, C, 2H, 2W)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv(channels, 4 * channels, 3)
        icnr_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))
