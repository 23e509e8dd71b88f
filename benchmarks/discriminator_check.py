"""Can the discriminator learn to tell HR patches from bicubic ones at a given scale?

    python benchmarks/discriminator_check.py --scale 2 --patch 48 [--head pooled|position] [--no-sn]

Trains a fresh discriminator alone (Adam 1e-4, batch 8 + 8) on HR patches of the sample data's
training split against bicubic upsampling of their LR inputs, the easiest fake there is, and
prints its loss (ln 4 = 1.386 is chance) and mean real / fake logits every 25 steps. ``--head
position`` drops the global average pool, so the head's 1x1 layers give one logit per position
and the loss averages over positions; ``--highpass`` feeds it only the fine detail
(``DiscriminatorConfig.highpass``). Last, it prints how close the fakes are: the mean PSNR of
the bicubic patches against HR. The model card quotes this check for why no x2 GAN variant
ships.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from fagan.data import SliceDataset, sample_volumes
from fagan.data.degrade import upsample_bicubic
from fagan.losses import discriminator_loss
from fagan.metrics import psnr
from fagan.models.config import DiscriminatorConfig
from fagan.models.discriminator import Discriminator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=2, choices=(2, 4, 8))
    parser.add_argument("--patch", type=int, default=48, help="HR patch side")
    parser.add_argument("--head", choices=("pooled", "position"), default="pooled")
    parser.add_argument("--no-sn", action="store_true", help="without spectral normalisation")
    parser.add_argument("--highpass", action="store_true", help="DiscriminatorConfig.highpass")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--zoom", type=float, nargs=2, metavar=("LO", "HI"), help="data.zoom_range")
    args = parser.parse_args()
    torch.manual_seed(0)
    paths = [v.path for v in sample_volumes("train")]
    data = SliceDataset(
        paths, args.scale, axes=(0, 1, 2), patch_size=args.patch, augment=True, zoom_range=args.zoom
    )
    d = Discriminator(DiscriminatorConfig(spectral_norm=not args.no_sn, highpass=args.highpass))
    if args.head == "position":
        d.head = nn.Sequential(*list(d.head)[1:])
    opt = torch.optim.Adam(d.parameters(), lr=1e-4, betas=(0.9, 0.999))
    pick = torch.Generator().manual_seed(0)
    print("step  loss   real logit  fake logit")
    fake_psnr = []
    for step in range(args.steps + 1):
        pairs = [data[int(i)] for i in torch.randint(len(data), (8,), generator=pick)]
        hr = torch.stack([p.hr for p in pairs])
        fake = upsample_bicubic(torch.stack([p.lr for p in pairs]), args.scale)
        fake_psnr.append(float(psnr(fake, hr, 1.0).mean()))
        logits = d(torch.cat([hr, fake])).view(2 * len(pairs), -1)  # a row of logits per image
        real_logits, fake_logits = logits.split(len(pairs))
        loss, _ = discriminator_loss(real_logits, fake_logits)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            real, fake_mean = real_logits.mean().item(), fake_logits.mean().item()
            print(f"{step:>4}  {loss.item():.3f}  {real:>+10.4f}  {fake_mean:>+10.4f}")
    mean_psnr = sum(fake_psnr) / len(fake_psnr)
    print(f"bicubic patches' PSNR against HR (normalised intensities): {mean_psnr:.1f} dB")


if __name__ == "__main__":
    main()
