"""Configurations of the FA-GAN model family.

One generator class (:class:`fagan.models.generator.Generator`) is switched by a
:class:`GeneratorConfig`; SRGAN, CA-SR-GAN, SA-SR-GAN, FA-GAN and every ablation of the paper's
Table 6 are entries of :data:`fagan.models.registry.GENERATORS` that differ only in the
switches ``lffb``, ``channel_attention``, ``self_attention`` and ``fusion``.

Choices the paper leaves open, and why (measurements in ``docs/model-choices.md``):

* ``channels=64``, ``residual_blocks=16``, ``batch_norm=True``, 9x9 head and output
  convolutions, PReLU: the SRGAN generator of Ledig et al. (2017), so that ``srgan`` is SRGAN.
* ``lffb_blocks=4`` with ``path_channels=32``: a stack of LFFBs with three full-width 7x7 paths
  costs about 8 GFLOP per block for a 64x64 input; four half-width blocks keep FA-GAN within
  twice SRGAN's cost per slice (the issue's performance target) while still stacking 12 layers
  of each kernel size.
* ``gffb_position="before_upsampling"``: the global feature fusion block runs on the
  low-resolution feature map, where self-attention over all H*W positions costs s**2 times fewer
  positions (s**4 fewer pair scores) than after upsampling.
* ``bicubic_residual=True``: the network predicts the difference to bicubic upsampling of its
  input, which converges much faster on small MRI training sets; set it ``False`` for the
  original SRGAN output path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Fusion = Literal["weighted", "direct"]
GffbPosition = Literal["before_upsampling", "after_upsampling"]


@dataclass(frozen=True)
class GeneratorConfig:
    """Every knob of the generator. Switches first, then the shared backbone."""

    # The switches that tell the family's members apart.
    lffb: bool = True
    channel_attention: bool = True
    self_attention: bool = True
    fusion: Fusion = "weighted"
    alpha: float = 0.5
    beta: float = 0.5
    # The backbone shared by every member.
    in_channels: int = 1
    channels: int = 64
    lffb_blocks: int = 4
    path_channels: int = 32
    residual_blocks: int = 16
    batch_norm: bool = True
    reduction: int = 16
    attention_ratio: int = 8
    gffb_position: GffbPosition = "before_upsampling"
    bicubic_residual: bool = True
    head_kernel: int = 9

    def __post_init__(self) -> None:
        if self.fusion not in ("weighted", "direct"):
            raise ValueError(f"fusion must be 'weighted' or 'direct', not {self.fusion!r}")
        if self.gffb_position not in ("before_upsampling", "after_upsampling"):
            raise ValueError(
                f"gffb_position must be 'before_upsampling' or 'after_upsampling', not {self.gffb_position!r}"
            )
        for name in (
            "in_channels",
            "channels",
            "lffb_blocks",
            "path_channels",
            "residual_blocks",
            "reduction",
            "attention_ratio",
            "head_kernel",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.channels % self.reduction or self.channels % self.attention_ratio:
            raise ValueError(
                f"channels ({self.channels}) must be divisible by reduction ({self.reduction}) "
                f"and attention_ratio ({self.attention_ratio})"
            )
        if self.head_kernel % 2 == 0:
            raise ValueError(f"head_kernel must be odd, not {self.head_kernel}")


@dataclass(frozen=True)
class DiscriminatorConfig:
    """SRGAN's discriminator: 8 convolutions, channels doubling every second (strided) one."""

    in_channels: int = 1
    channels: int = 64
    stages: int = 4
    hidden: int = 1024
    negative_slope: float = 0.2
    spectral_norm: bool = True  # False: plain convolutions (the paper's Fig. 10 comparison)
    # True: the network sees the image minus its 3x3 local mean (x10), i.e. only the fine detail;
    # at x2 that is all SR and HR differ in, and the plain input hides it (see Discriminator).
    highpass: bool = False
