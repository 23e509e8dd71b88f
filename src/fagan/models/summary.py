"""Size and cost of the named generators (for ``fagan models`` and the benchmark)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Floating-point operations (a multiply-add counts 2) of one forward pass.

    Convolutions, matrix products and attention are counted by torch's FlopCounterMode on a
    meta-device copy, so nothing is computed and no memory is used for activations.
    """
    meta = _to_meta(model)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(input_shape, device="meta"))
    return int(counter.get_total_flops())


def _to_meta(model: nn.Module) -> nn.Module:
    import copy

    clone = copy.deepcopy(model)
    return clone.to_empty(device="meta").eval()


@dataclass(frozen=True)
class ModelSummary:
    name: str
    lffb: bool
    channel_attention: bool
    self_attention: bool
    fusion: str
    parameters: int
    gflops: float


def summarise(name: str, scale: int = 4, output_size: int = 256) -> ModelSummary:
    """Switches, parameter count and GFLOPs for one ``output_size``-square slice at ``scale``."""
    from fagan.models.registry import build_generator

    model = build_generator(name, scale)
    config = model.config
    lr = output_size // scale
    flops = count_flops(model, (1, config.in_channels, lr, lr))
    fusion = config.fusion if config.channel_attention and config.self_attention else "-"
    return ModelSummary(
        name,
        config.lffb,
        config.channel_attention,
        config.self_attention,
        fusion,
        parameter_count(model),
        flops / 1e9,
    )
