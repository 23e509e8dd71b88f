"""A VGG19 state dict with fixed random weights, written the way torchvision's file is laid out."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fagan.losses.perceptual import vgg_features


def write_test_vgg19(path: Path, seed: int = 0, classifier: bool = True) -> Path:
    """Save a ``features.N.weight`` (+ a dummy ``classifier``) state dict; He-initialised so
    activations keep their scale through all 16 convolutions."""
    torch.manual_seed(seed)
    features = vgg_features("vgg19")
    for module in features:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    if classifier:
        state["classifier.0.weight"] = torch.zeros(4, 8)
    torch.save(state, path)
    return path
