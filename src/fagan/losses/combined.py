"""The generator's objective: weighted pixel, perceptual and adversarial terms.

``l_G = w_pix * l_pixel + w_vgg * l_VGG + w_adv * l_adv``. Default weights and where they come
from (the FA-GAN paper names the three terms but its weights were not something we could
confirm, so we take SRGAN's, the backbone FA-GAN builds on):

* ``pixel_weight = 1``: SRGAN's MSE content loss;
* ``perceptual_weight = 1`` with features scaled by 1/12.75: SRGAN's VGG54 content loss (the
  rescaling makes the term comparable to the MSE, see :mod:`fagan.losses.perceptual`);
* ``adversarial_weight = 1e-3``: SRGAN's weight of ``-log D(G(LR))``.

ESRGAN's choice (L1 pixel 1e-2, VGG before activation 1, adversarial 5e-3) is a configuration
away: ``loss.pixel=l1, loss.pixel_weight=0.01, loss.perceptual_layer=conv5_4,
loss.perceptual_scale=1, loss.adversarial_weight=0.005``.
"""

from __future__ import annotations

import torch
from torch import nn

from fagan.losses.adversarial import generator_adversarial_loss
from fagan.losses.perceptual import PerceptualLoss
from fagan.losses.pixel import PixelLoss

DEFAULT_WEIGHTS: dict[str, float] = {"pixel": 1.0, "perceptual": 1.0, "adversarial": 1e-3}


class GeneratorLoss(nn.Module):
    """Weighted sum of the generator's terms; returns ``(total, terms)``.

    ``terms`` maps ``"pixel"``, ``"perceptual"``, ``"adversarial"`` (unweighted, detached; only
    the terms in use) and ``"g_total"`` (the weighted sum) to scalar tensors. A term whose weight
    is 0 is not computed. ``warmup=True`` uses the pixel term alone (SRResNet pre-training).
    """

    def __init__(
        self,
        pixel: PixelLoss | None = None,
        pixel_weight: float = DEFAULT_WEIGHTS["pixel"],
        perceptual: PerceptualLoss | None = None,
        perceptual_weight: float = DEFAULT_WEIGHTS["perceptual"],
        adversarial_weight: float = DEFAULT_WEIGHTS["adversarial"],
    ) -> None:
        super().__init__()
        self.pixel = pixel if pixel is not None else PixelLoss()
        self.perceptual = perceptual if perceptual_weight else None
        self.pixel_weight = float(pixel_weight)
        self.perceptual_weight = float(perceptual_weight)
        self.adversarial_weight = float(adversarial_weight)
        if self.perceptual_weight and perceptual is None:
            raise ValueError("perceptual_weight is set but no PerceptualLoss was given")

    @property
    def adversarial(self) -> bool:
        """Whether the adversarial term (and so a discriminator) is in use."""
        return self.adversarial_weight != 0

    def forward(
        self,
        sr: torch.Tensor,
        hr: torch.Tensor,
        fake_logits: torch.Tensor | None = None,
        warmup: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``sr``, ``hr``: ``(B, C, H, W)``; ``fake_logits``: ``(B,)``, D's logits for ``sr``."""
        pixel = self.pixel(sr, hr)
        terms = {"pixel": pixel.detach()}
        if warmup:
            total = pixel
        else:
            total = self.pixel_weight * pixel
            if self.perceptual is not None:
                perceptual = self.perceptual(sr, hr)
                terms["perceptual"] = perceptual.detach()
                total = total + self.perceptual_weight * perceptual
            if self.adversarial:
                if fake_logits is None:
                    raise ValueError("the adversarial term needs the discriminator's logits for sr")
                adversarial = generator_adversarial_loss(fake_logits)
                terms["adversarial"] = adversarial.detach()
                total = total + self.adversarial_weight * adversarial
        terms["g_total"] = total.detach()
        return total, terms
