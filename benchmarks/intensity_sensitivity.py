"""How much the held-out gain over bicubic depends on where the input's normalisation lands.

    python benchmarks/intensity_sensitivity.py --scale 4 [--weights W ...] [--gains 0.8 1 1.25]

``fagan upscale`` maps the network's input to [0, 1] by percentiles of the LR volume
(:func:`fagan.data.normalize.fit_scaling`); training maps by those of the HR volume. For every
held-out sample volume (LR simulated as in ``fagan demo``) and each weights file (default: the
shipped PSNR weights of the scale) this prints the PSNR gain over bicubic, dB, when the input is
normalised:

- ``k=K``: by the LR fit as shipped, then multiplied by K (``k=1`` is what ``fagan upscale``
  does; K > 1 makes the input brighter);
- ``hr-fit``: by the HR volume's fit, as training would (an oracle: the HR volume is not
  available at test time);
- ``p_low=0``: by the LR fit with its dark end at the volume's minimum instead of its 0.5
  percentile, so that no input value is below 0.

The output is always mapped back with the scaling it went in with, so only the network's input
changes. It also prints, per volume, how the LR fit differs from the HR fit: the gain it amounts
to, and where the HR fit's 0 (the dark end) lands in the LR fit's units.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fagan.data.io import read_volume
from fagan.data.normalize import IntensityScaling, fit_scaling
from fagan.data.sample import sample_volumes
from fagan.evaluation.simulate import bicubic_volume, score_volume, simulate_low_resolution
from fagan.inference.upscale import upscale_volume
from fagan.models.release import load_release, shipped_weights


def brighter(scaling: IntensityScaling, k: float) -> IntensityScaling:
    """``scaling`` followed by multiplication by ``k``."""
    return IntensityScaling(scaling.low, scaling.low + (scaling.high - scaling.low) / k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=4, choices=(2, 4, 8))
    parser.add_argument("--weights", nargs="+", type=Path, help="release files (default: shipped psnr)")
    parser.add_argument("--gains", nargs="+", type=float, default=[0.8, 1.0, 1.25])
    args = parser.parse_args()
    samples = sample_volumes("test")
    brains = [s.anatomy == "brain" for s in samples]
    pairs = [simulate_low_resolution(read_volume(s.path), args.scale) for s in samples]
    bicubic = [score_volume(bicubic_volume(p.lr, args.scale), p.hr.array).psnr for p in pairs]
    lr_fits = [fit_scaling(p.lr.array) for p in pairs]
    hr_fits = [fit_scaling(p.hr.array) for p in pairs]
    print(f"LR fit against HR fit, x{args.scale}")
    for sample, lr, hr in zip(samples, lr_fits, hr_fits, strict=True):
        gain = (hr.high - hr.low) / (lr.high - lr.low)
        print(f"  {sample.name:<34} gain {gain:.3f}   HR fit's 0 at {lr.apply(hr.low):+.3f}")
    ways = {f"k={k:g}": [brighter(fit, k) for fit in lr_fits] for k in args.gains}
    ways["hr-fit"] = hr_fits
    ways["p_low=0"] = [fit_scaling(p.lr.array, p_low=0.0) for p in pairs]
    for path in args.weights or [shipped_weights(args.scale, "psnr")]:
        generator = load_release(path, scale=args.scale)[0]
        print(f"\n{path.name}: gain over bicubic, dB")
        names = "".join(f"{s.name[:14]:>16}" for s in samples)
        print(f"  {'input':<10}{names}{'brains':>9}{'all':>8}")
        for label, scalings in ways.items():
            gains = [
                score_volume(upscale_volume(p.lr, generator, scaling=sc).array, p.hr.array).psnr - b
                for p, sc, b in zip(pairs, scalings, bicubic, strict=True)
            ]
            row = "".join(f"{g:>+16.3f}" for g in gains)
            means = f"{np.mean(np.array(gains)[brains]):>+9.3f}{np.mean(gains):>+8.3f}"
            print(f"  {label:<10}{row}{means}", flush=True)


if __name__ == "__main__":
    main()
