"""Losses of FA-GAN training, each term its own module: pixel (MSE / L1), perceptual (VGG
features) and adversarial (non-saturating GAN), combined for the generator by
:class:`GeneratorLoss`."""

from fagan.losses.adversarial import AdversarialLoss, discriminator_loss, generator_adversarial_loss
from fagan.losses.combined import DEFAULT_WEIGHTS, GeneratorLoss
from fagan.losses.perceptual import (
    PerceptualLoss,
    cached_weights_path,
    layer_names,
    load_vgg_state_dict,
    vgg_features,
)
from fagan.losses.pixel import PIXEL_LOSSES, PixelLoss

__all__ = [
    "DEFAULT_WEIGHTS",
    "PIXEL_LOSSES",
    "AdversarialLoss",
    "GeneratorLoss",
    "PerceptualLoss",
    "PixelLoss",
    "cached_weights_path",
    "discriminator_loss",
    "generator_adversarial_loss",
    "layer_names",
    "load_vgg_state_dict",
    "vgg_features",
]
