"""The FA-GAN generator (paper Fig. 1), and with its switches off, SRGAN's."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fagan.models.attention import GlobalFeatureFusionBlock
from fagan.models.blocks import LocalFusionFeatureBlock, ResidualBlock, UpsampleStage, conv
from fagan.models.config import GeneratorConfig
from fagan.scales import check_scale


class Generator(nn.Module):
    """Low-resolution slice to super-resolved slice: ``(B, C, H, W) -> (B, C, s*H, s*W)``.

    head conv + PReLU -> body (``lffb_blocks`` LFFBs, or SRGAN's ``residual_blocks`` residual
    blocks when ``lffb`` is off) -> conv (+ BN) plus the head's output -> GFFB (here when
    ``gffb_position`` is ``"before_upsampling"``) -> log2(s) x2 upsampling stages -> GFFB (here
    when ``"after_upsampling"``) -> output conv, plus bicubic upsampling of the input when
    ``bicubic_residual`` is on.
    """

    def __init__(self, config: GeneratorConfig, scale: int) -> None:
        super().__init__()
        self.config = config
        self.scale = check_scale(scale)
        c = config.channels
        self.head = nn.Sequential(conv(config.in_channels, c, config.head_kernel), nn.PReLU(c))
        if config.lffb:
            blocks: list[nn.Module] = [
                LocalFusionFeatureBlock(c, config.path_channels) for _ in range(config.lffb_blocks)
            ]
            tail: list[nn.Module] = [conv(c, c, 3)]
        else:
            blocks = [ResidualBlock(c, config.batch_norm) for _ in range(config.residual_blocks)]
            tail = [conv(c, c, 3, bias=not config.batch_norm)]
            tail += [nn.BatchNorm2d(c)] if config.batch_norm else []
        self.body = nn.Sequential(*blocks, *tail)
        self.gffb = GlobalFeatureFusionBlock(
            c,
            channel_attention=config.channel_attention,
            self_attention=config.self_attention,
            fusion=config.fusion,
            alpha=config.alpha,
            beta=config.beta,
            reduction=config.reduction,
            attention_ratio=config.attention_ratio,
        )
        self.upsample = nn.Sequential(*(UpsampleStage(c) for _ in range(int(math.log2(scale)))))
        self.tail = conv(c, config.in_channels, config.head_kernel)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        features = self.head(lr)
        features = features + self.body(features)
        if self.config.gffb_position == "before_upsampling":
            features = self.upsample(self.gffb(features))
        else:
            features = self.gffb(self.upsample(features))
        sr = self.tail(features)
        if self.config.bicubic_residual:
            sr = sr + F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return sr


def grow_upsampling(state: dict[str, torch.Tensor], stages: int) -> dict[str, torch.Tensor]:
    """A generator's state dict with its x2 upsampling stages extended to ``stages``.

    Each added stage starts as a copy of the last trained one, so the weights of a smaller scale
    can start the training of a larger one (EDSR initialises its x4 model from its x2 model the
    same way, because the x2 features transfer and training converges faster).
    """
    trained = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("upsample."))
    if stages < trained:
        raise ValueError(f"cannot shrink {trained} upsampling stages to {stages}")
    grown = dict(state)
    last = f"upsample.{trained - 1}."
    for stage in range(trained, stages):
        for key, value in state.items():
            if key.startswith(last):
                grown[f"upsample.{stage}." + key[len(last) :]] = value.clone()
    return grown


def grow_blocks(
    state: dict[str, torch.Tensor], blocks: int, fresh: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A generator's state dict with its stack of LFFBs deepened to ``blocks``.

    The added blocks follow the trained ones and take their weights from ``fresh`` (the state of
    a newly built generator of the deeper configuration), except that their 1x1 fusion
    convolution starts at zero: an LFFB adds its input back, so each new block starts as the
    identity and the deeper generator computes exactly what the trained one did (as Net2Net's
    deeper networks start) before training moves it.
    """
    trained = sum(1 for key in state if key.startswith("body.") and key.endswith(".fuse.weight"))
    if blocks < trained:
        raise ValueError(f"cannot shrink {trained} LFFBs to {blocks}")
    grown = {key: value for key, value in state.items() if not key.startswith("body.")}
    for key, value in state.items():
        if key.startswith("body."):
            _, index, rest = key.split(".", 2)
            i = int(index)
            grown[f"body.{i if i < trained else i - trained + blocks}.{rest}"] = (
                value  # the closing conv moves
            )
    for key, value in fresh.items():
        if key.startswith("body.") and trained <= int(key.split(".")[1]) < blocks:
            grown[key] = torch.zeros_like(value) if ".fuse." in key else value.clone()
    return grown
