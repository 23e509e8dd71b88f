"""Inference-time rewrites of a trained generator: the same output (to fp32 rounding), sooner.

:func:`optimize_for_inference` returns a rewritten copy; the original, its ``state_dict`` and the
release files are untouched, so training, checkpoints, ``fagan export`` and the shipped weights
see the architecture of :mod:`fagan.models.generator` only. The rewrites, each measured on CPU in
``BENCHMARKS.md`` (``python benchmarks/inference_steps.py`` repeats the measurements):

* batch normalisation folded into the convolution before it (SRGAN-style bodies);
* the output convolution (64 -> 1 channel, 9x9, on the full-resolution map), which oneDNN runs
  at about a tenth of its speed on wider convolutions, computed as one matrix product per slice
  to the ``k*k`` kernel taps and ``k*k`` shifted additions (:class:`TapSumConv`).

Rewrites that were measured and did not pay (merging the LFFB's three parallel convolutions into
one zero-padded 7x7 convolution; channels-last memory format) are described in ``BENCHMARKS.md``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class TapSumConv(nn.Module):
    """A stride-1, zero-padded ``k x k`` convolution to few output channels, computed as taps.

    ``y[o, i, j] = b[o] + sum_{c,u,v} W[o, c, u, v] x[c, i + u - p, j + v - p]`` is evaluated as one
    matrix product ``T = W' x`` (``W'`` of shape ``(O*k*k, C)``, one row per output channel and
    kernel tap) followed by ``k*k`` additions of ``T``'s rows shifted by their tap offset. With few
    output channels the product is far more efficient on a CPU than a direct convolution, at the
    price of ``O*k*k`` full-size maps per slice in memory (81 for the 9x9 output convolution,
    about 21 MB for a 256x256 slice). ``(B, C, H, W) -> (B, O, H, W)``.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        kh, kw = conv.kernel_size
        if (
            kh != kw
            or kh % 2 == 0
            or conv.stride != (1, 1)
            or conv.dilation != (1, 1)
            or conv.groups != 1
            or conv.padding != (kh // 2, kw // 2)
            or conv.padding_mode != "zeros"
        ):
            raise ValueError("TapSumConv needs a stride-1, ungrouped, zero-padded 'same' convolution")
        out_channels, in_channels = conv.out_channels, conv.in_channels
        self.kernel = kh
        weight = conv.weight.detach()
        # (O, C, k, k) -> (O, k, k, C) -> (O*k*k, C): row (o, u, v) is the tap (u, v) of output o.
        self.register_buffer("taps", weight.permute(0, 2, 3, 1).reshape(out_channels * kh * kh, in_channels))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(out_channels)
        self.register_buffer("bias", bias.clone())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k, p, o = self.kernel, self.kernel // 2, self.out_channels
        flat = x.contiguous().reshape(b, c, h * w)
        taps = self.taps.to(x.dtype)
        out = x.new_zeros(b, o, h + 2 * p, w + 2 * p)
        for n in range(b):
            # A 2D product per slice: torch's batched product takes a far slower path here.
            t = (taps @ flat[n]).view(o, k, k, h, w)
            target = out[n]
            for u in range(k):
                for v in range(k):
                    # Tap (u, v) at input (i, j) lands on output (i - u + p, j - v + p).
                    target[:, 2 * p - u : 2 * p - u + h, 2 * p - v : 2 * p - v + w] += t[:, u, v]
        return out[:, :, p : p + h, p : p + w] + self.bias.to(x.dtype).view(1, o, 1, 1)


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` in an
    ``nn.Sequential`` into that convolution (in place); the norm becomes ``nn.Identity``."""
    for child in module.modules():
        if not isinstance(child, nn.Sequential):
            continue
        names = list(child._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, norm = child._modules[first], child._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and not norm.training:
                child._modules[first] = fuse_conv_bn_eval(conv, norm)
                child._modules[second] = nn.Identity()
    return module


def optimize_for_inference(
    generator: nn.Module, device: torch.device | str = "cpu", tap_sum: bool | None = None
) -> nn.Module:
    """A copy of ``generator`` (in eval mode, on ``device``) rewritten for fast inference.

    ``tap_sum`` (default: on for CPU only, where it was measured) replaces the output convolution
    by :class:`TapSumConv` when that convolution has at most 4 output channels.
    """
    device = torch.device(device)
    fast = copy.deepcopy(generator).to(device).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    fold_batch_norms(fast)
    if tap_sum is None:
        tap_sum = device.type == "cpu"
    tail = getattr(fast, "tail", None)
    if tap_sum and isinstance(tail, nn.Conv2d) and tail.out_channels <= 4 and tail.kernel_size[0] > 1:
        fast.tail = TapSumConv(tail).to(device)
    return fast
