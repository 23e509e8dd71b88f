"""Adversarial losses of a standard (non-saturating) GAN, on discriminator logits.

The generator minimises ``-log D(G(LR))`` (paper Eq. for the adversarial term, from SRGAN),
which is binary cross-entropy of the fake logits against the label 1. The discriminator
minimises the cross-entropy of real logits against 1 plus fake logits against 0. Working on
logits (``binary_cross_entropy_with_logits``) is the numerically stable form of the same
formulas; it stays in float32 under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``mean(-log sigmoid(D(G(LR))))``: logits ``(B,) -> ()``."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``-log D(HR) - log(1 - D(G(LR)))`` averaged over the batch: logits ``(B,), (B,) -> ()``.

    Returns the total and its two terms (detached) under ``"d_real"`` and ``"d_fake"``.
    """
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake, {"d_real": real.detach(), "d_fake": fake.detach()}


class AdversarialLoss(nn.Module):
    """The two sides as one module: :meth:`generator` and :meth:`discriminator`."""

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return generator_adversarial_loss(fake_logits)

    def discriminator(
        self, real_logits: torch.Tensor, fake_logits: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return discriminator_loss(real_logits, fake_logits)

    def forward(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return self.generator(fake_logits)
