"""A dedicated x4 or x8 network against the shipped x2 network applied two or three times.

    python benchmarks/cascade.py [--scale 4]

For every held-out sample volume the LR input is simulated at ``--scale`` as in ``fagan demo``.
It is then super-resolved in two ways: by the shipped weights of that scale, and by a cascade
of the shipped x2 weights (x4 = x2 twice, x8 = three times), with the data-consistency
projection left off between the passes and applied once, against the real LR input, at the
end (as ``fagan demo`` applies it to the dedicated network). Printed: each one's PSNR gain over
bicubic in dB (the demo's PSNR), and the gain of their plain average.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from fagan.data.io import read_volume
from fagan.data.sample import sample_volumes
from fagan.evaluation.simulate import bicubic_volume, score_volume, simulate_low_resolution, slices_along
from fagan.inference.consistency import project_onto_input
from fagan.inference.upscale import upscale_volume
from fagan.models.release import load_release, shipped_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, choices=[4, 8], default=4)
    args = parser.parse_args()
    passes = {4: 2, 8: 3}[args.scale]
    direct, _ = load_release(shipped_weights(args.scale, "psnr"), scale=args.scale)
    x2, _ = load_release(shipped_weights(2, "psnr"), scale=2)
    print(f"x{args.scale}: gain over bicubic, dB (dedicated weights vs x2 weights {passes} times)")
    print(f"{'volume':<36} {'dedicated':>9} {'cascade':>8} {'average':>8}")
    means: list[list[float]] = []
    for sample in sample_volumes("test"):
        pair = simulate_low_resolution(read_volume(sample.path), args.scale)
        hr = pair.hr.array
        bicubic = score_volume(bicubic_volume(pair.lr, args.scale), hr).psnr
        one = upscale_volume(pair.lr, direct).array
        chained = pair.lr
        for _ in range(passes):
            chained = upscale_volume(chained, x2, consistency=False)
        projected = project_onto_input(
            slices_along(chained.array, 2).double(), slices_along(pair.lr.array, 2).double(), args.scale
        )
        cascade = np.moveaxis(projected[:, 0].float().numpy(), 0, 2)
        gains = [score_volume(sr, hr).psnr - bicubic for sr in (one, cascade, (one + cascade) / 2)]
        if sample.anatomy == "brain":
            means.append(gains)
        print(f"{sample.name:<36} {gains[0]:>+9.2f} {gains[1]:>+8.2f} {gains[2]:>+8.2f}")
    brains = torch.tensor(means).mean(dim=0).tolist()
    print(f"{'mean over the brains':<36} {brains[0]:>+9.2f} {brains[1]:>+8.2f} {brains[2]:>+8.2f}")


if __name__ == "__main__":
    main()
