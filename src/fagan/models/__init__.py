"""The FA-GAN model family: one generator class switched by configuration, and the
spectral-normalised SRGAN discriminator."""

from fagan.models.attention import (
    ChannelAttention,
    DirectFusion,
    GlobalFeatureFusionBlock,
    SelfAttention,
    WeightedFusion,
)
from fagan.models.blocks import LocalFusionFeatureBlock, ResidualBlock, UpsampleStage
from fagan.models.config import DiscriminatorConfig, GeneratorConfig
from fagan.models.discriminator import Discriminator
from fagan.models.generator import Generator
from fagan.models.registry import (
    ABLATIONS,
    BASELINES,
    GENERATORS,
    build_discriminator,
    build_generator,
    generator_config,
)
from fagan.scales import SCALES

__all__ = [
    "ABLATIONS",
    "BASELINES",
    "GENERATORS",
    "SCALES",
    "ChannelAttention",
    "DirectFusion",
    "Discriminator",
    "DiscriminatorConfig",
    "Generator",
    "GeneratorConfig",
    "GlobalFeatureFusionBlock",
    "LocalFusionFeatureBlock",
    "ResidualBlock",
    "SelfAttention",
    "UpsampleStage",
    "WeightedFusion",
    "build_discriminator",
    "build_generator",
    "generator_config",
]
