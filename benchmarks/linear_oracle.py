"""How much a linear filter could gain over bicubic if it were fitted to the answer.

    python benchmarks/linear_oracle.py [--scales 2 4] [--size 9]

For every held-out sample volume, the LR input is simulated as in ``fagan demo`` and upsampled
by bicubic interpolation; then the ``size`` x ``size`` filter (plus a constant) that brings that
bicubic image closest to the original HR volume in the least-squares sense is fitted to the HR
volume itself and applied. No real method can do this (it looks at the answer), so its gain over
bicubic is a ceiling for linear sharpening of that volume: where it is small, what is missing
from the LR image is mostly noise or detail no linear filter can predict, as on the noisy 0.2 mm
shoulder slice. Gains are in dB, with the demo's PSNR (whole volume, the HR volume's value range).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from fagan.data.io import read_volume
from fagan.data.sample import sample_volumes
from fagan.evaluation.simulate import bicubic_volume, simulate_low_resolution, slices_along
from fagan.metrics.image import psnr


def oracle_filter(bicubic: np.ndarray, hr: np.ndarray, size: int) -> np.ndarray:
    """``bicubic`` filtered, slice by slice along axis 2, with the ``size`` x ``size`` kernel and
    offset that minimise the squared error to ``hr`` over the whole volume."""
    x = slices_along(bicubic, 2).double()  # (Z, 1, X, Y)
    columns = F.unfold(x, size, padding=size // 2).transpose(1, 2).reshape(-1, size * size)
    design = torch.cat([columns, torch.ones(len(columns), 1, dtype=torch.float64)], dim=1)
    target = slices_along(hr, 2).double().reshape(-1, 1)
    weights = torch.linalg.lstsq(design, target).solution
    return np.moveaxis((design @ weights).reshape(x.shape)[:, 0].numpy(), 0, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--size", type=int, default=9, help="filter side in pixels (odd; default 9)")
    args = parser.parse_args()
    print(f"gain over bicubic of the best {args.size}x{args.size} linear filter fitted to the HR volume, dB")
    for sample in sample_volumes("test"):
        volume = read_volume(sample.path)
        gains = []
        for scale in args.scales:
            pair = simulate_low_resolution(volume, scale)
            hr = pair.hr.array
            bicubic = bicubic_volume(pair.lr, scale)
            data_range = float(hr.max() - hr.min())

            def score(image: np.ndarray, hr: np.ndarray = hr, data_range: float = data_range) -> float:
                return float(psnr(torch.from_numpy(image)[None], torch.from_numpy(hr)[None], data_range)[0])

            gain = score(oracle_filter(bicubic, hr, args.size)) - score(bicubic)
            gains.append(f"x{scale} {gain:+.2f}")
        print(f"{sample.name:<36} {'  '.join(gains)}")


if __name__ == "__main__":
    main()
