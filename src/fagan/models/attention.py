"""The global feature fusion block (GFFB, paper Sec. 2.3, Figs. 3-5): channel attention,
self-attention, and their fusion."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ChannelAttention(nn.Module):
    """SE-style channel attention: global average pool, FC reduce by ``r``, ReLU, FC expand,
    sigmoid, rescale the input. ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.excite = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel weights in (0, 1), shape ``(B, C, 1, 1)``."""
        return self.excite(self.squeeze(x).flatten(1))[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al., 2019) over all ``N = H*W`` positions.

    ``f`` (query) and ``g`` (key) are 1x1 convolutions to ``C / ratio`` channels, ``h`` (value)
    keeps ``C`` channels, the attention map is a softmax over all positions of ``f^T g``
    (unscaled, as in SAGAN), and ``v`` is the 1x1 output projection. The output is
    ``gamma * v(attention) + x`` with a learnable ``gamma`` initialised to 0, so the block starts
    as the identity. ``(B, C, H, W) -> (B, C, H, W)``.

    Memory is linear in N: the N x N map is never stored. ``F.scaled_dot_product_attention``
    runs a fused (flash) kernel on CPU and GPU when queries, keys and values share one width, so
    queries and keys are zero-padded to the value width, which leaves every score unchanged.
    Queries are processed in chunks of at most ``max_queries`` so that a backend that does
    materialise scores still holds only ``max_queries x N`` of them.

    Above ``max_keys`` positions, keys and values are average-pooled over ``k x k`` windows (the
    smallest ``k`` that leaves at most ``max_keys``), as BigGAN pools them: every query still
    sees the whole image, at a coarser grain, and the cost grows linearly with ``N`` instead of
    quadratically. With the default 4096 this never happens on training patches (up to 64 x 64
    low-resolution positions) and starts with whole slices at x2 (128 x 128 and up), where full
    attention alone would cost more than SRGAN's whole network. ``max_keys=None`` attends to
    every position.
    """

    def __init__(
        self, channels: int, ratio: int = 8, max_queries: int = 4096, max_keys: int | None = 4096
    ) -> None:
        super().__init__()
        self.f = nn.Conv2d(channels, channels // ratio, 1)
        self.g = nn.Conv2d(channels, channels // ratio, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.max_queries = max_queries
        self.max_keys = max_keys

    def key_pool(self, height: int, width: int) -> int:
        """The pooling window side for keys and values on a ``height x width`` input (1: none)."""
        if self.max_keys is None or height * width <= self.max_keys:
            return 1
        return math.ceil(math.sqrt(height * width / self.max_keys))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The attention output before ``v`` and ``gamma``: ``(B, C, H, W)``."""
        b, c, height, width = x.shape
        pad = (0, c - self.f.out_channels)
        # (B, 1, N, C), each row contiguous: the fused kernels need unit stride along channels.
        query = F.pad(self.f(x).flatten(2).transpose(1, 2), pad)[:, None]
        keys, values = self.g(x), self.h(x)
        k = self.key_pool(height, width)
        if k > 1:  # ceil_mode keeps the border; padding is not counted in the averages
            keys = F.avg_pool2d(keys, k, ceil_mode=True)
            values = F.avg_pool2d(values, k, ceil_mode=True)
        key = F.pad(keys.flatten(2).transpose(1, 2), pad)[:, None]
        value = values.flatten(2).transpose(1, 2).contiguous()[:, None]
        if height * width <= self.max_queries:
            # One call (and a graph without a size-dependent split, for ONNX export).
            out = F.scaled_dot_product_attention(query, key, value, scale=1.0)
            return out[:, 0].transpose(1, 2).reshape(b, c, height, width)
        chunks = [
            F.scaled_dot_product_attention(q, key, value, scale=1.0)
            for q in query.split(self.max_queries, dim=2)
        ]
        return torch.cat(chunks, dim=2)[:, 0].transpose(1, 2).reshape(b, c, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.v(self.attend(x))


class DirectFusion(nn.Module):
    """Direct connection (paper Eq. 3): ``alpha * R + beta * Y``."""

    def __init__(self, alpha: float = 0.5, beta: float = 0.5) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, r: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.alpha * r + self.beta * y


class WeightedFusion(nn.Module):
    """Weighted connection (paper Eq. 4), parameter-free: R and Y compete element by element.

    The weights are a softmax over the two branches of ``alpha * R`` and ``beta * Y``, so at
    every feature they are positive and sum to 1, the larger response wins more of the output,
    and ``R == Y`` gives back ``R`` whatever alpha and beta are.
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def weights(self, r: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.softmax(torch.stack((self.alpha * r, self.beta * y)), dim=0)
        return w[0], w[1]

    def forward(self, r: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w_r, w_y = self.weights(r, y)
        return w_r * r + w_y * y


class GlobalFeatureFusionBlock(nn.Module):
    """GFFB: channel attention (R) and self-attention (Y) on the same features, then fused.

    With only one of the two attentions switched on, its output is the block's output; with
    neither, the block is the identity. ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(
        self,
        channels: int,
        channel_attention: bool = True,
        self_attention: bool = True,
        fusion: str = "weighted",
        alpha: float = 0.5,
        beta: float = 0.5,
        reduction: int = 16,
        attention_ratio: int = 8,
    ) -> None:
        super().__init__()
        self.ca = ChannelAttention(channels, reduction) if channel_attention else None
        self.sa = SelfAttention(channels, attention_ratio) if self_attention else None
        self.fusion: nn.Module | None = None
        if channel_attention and self_attention:
            self.fusion = WeightedFusion(alpha, beta) if fusion == "weighted" else DirectFusion(alpha, beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.ca(x) if self.ca is not None else None
        y = self.sa(x) if self.sa is not None else None
        if r is not None and y is not None:
            assert self.fusion is not None
            return self.fusion(r, y)
        if r is not None:
            return r
        return y if y is not None else x
