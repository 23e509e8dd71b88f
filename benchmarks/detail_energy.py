"""How much of the finest image detail each method restores, relative to the original.

    python benchmarks/detail_energy.py --scale 4 [--weights W ...]

For every held-out sample volume, the LR input is simulated as in ``fagan demo``; bicubic
upsampling and each weights file (default: the shipped PSNR and GAN variants of the scale) then
rebuild it. The figure printed is the root-mean-square of the finest diagonal (Haar HH) detail
of the result divided by that of the original: 1.0 is the original's amount of fine detail,
bicubic is far below it, and a GAN-trained generator should sit nearer 1 than a PSNR-oriented
one. It measures amount, not correctness: PSNR says how right the detail is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fagan.data.io import read_volume
from fagan.data.sample import sample_volumes
from fagan.evaluation.simulate import bicubic_volume, simulate_low_resolution
from fagan.inference.upscale import upscale_volume
from fagan.models.release import SHIPPED_DIR, load_release


def haar_hh(volume: np.ndarray) -> np.ndarray:
    """The finest diagonal Haar detail (HH band) of every slice along the last axis, in-plane
    axes 0 and 1 cropped to even sizes: ``(X, Y, Z) -> (X // 2, Y // 2, Z)``."""
    x = volume[: volume.shape[0] // 2 * 2, : volume.shape[1] // 2 * 2]
    return (x[0::2, 0::2] - x[1::2, 0::2] - x[0::2, 1::2] + x[1::2, 1::2]) / 2


def detail_rms(volume: np.ndarray) -> float:
    """RMS of :func:`haar_hh` of ``volume``."""
    return float(np.sqrt(np.mean(haar_hh(volume).astype(np.float64) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=4, choices=(2, 4, 8))
    parser.add_argument("--weights", nargs="+", type=Path, help="release files (default: shipped psnr + gan)")
    args = parser.parse_args()
    paths = args.weights or sorted(SHIPPED_DIR.glob(f"fagan_x{args.scale}*.safetensors"))
    generators = {path.stem: load_release(path, scale=args.scale)[0] for path in paths}
    print(f"fine-detail energy relative to the original, x{args.scale}")
    print(f"{'volume':<34}" + "".join(f"{name:>22}" for name in ["bicubic", *generators]))
    for sample in sample_volumes("test"):
        pair = simulate_low_resolution(read_volume(sample.path), args.scale)
        reference = detail_rms(pair.hr.array)
        results = [bicubic_volume(pair.lr, args.scale)]
        results += [upscale_volume(pair.lr, g).array for g in generators.values()]
        print(f"{sample.name:<34}" + "".join(f"{detail_rms(r) / reference:>22.2f}" for r in results))


if __name__ == "__main__":
    main()
