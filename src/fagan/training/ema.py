"""An exponential moving average of the generator's weights (as in ESRGAN / Real-ESRGAN releases)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``model`` (a frozen copy in eval mode) at ``decay * model + (1 - decay) * source``.

    The decay ramps up as ``min(decay, (1 + step) / (10 + step))`` (TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``), so the average follows the network
    closely early on and short runs already produce a useful average. Buffers (BatchNorm
    statistics) are copied, not averaged.
    """

    def __init__(self, source: nn.Module, decay: float = 0.999) -> None:
        self.decay = float(decay)
        self.model = copy.deepcopy(source).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, source: nn.Module, step: int) -> None:
        """Move the average towards ``source`` after optimisation step ``step`` (0-based)."""
        weight = 1.0 - self.decay_at(step)
        for mine, theirs in zip(self.model.parameters(), source.parameters(), strict=True):
            mine.lerp_(theirs.detach(), weight)
        for mine, theirs in zip(self.model.buffers(), source.buffers(), strict=True):
            mine.copy_(theirs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
