"""The noise level of each embedded sample volume, on the intensity scale training uses.

    python benchmarks/noise_levels.py

Each volume is normalised as in training (``fagan.data.normalize.fit_scaling``: the 0.5th
percentile to 0, the 99.5th percentile of the voxels above it to 1). The noise estimate is the
median absolute diagonal Haar detail divided by 0.6745 (Donoho's robust estimate of a Gaussian's
standard deviation) over the background voxels (normalised intensity at most 0.1), where there
is no anatomy to mistake for noise; the same over the foreground is printed beside it, where
fine anatomy also counts. This is the evidence behind ``data.noise_range`` in
``docs/model-choices.md``.
"""

from __future__ import annotations

import numpy as np
from detail_energy import haar_hh  # this folder's script, on sys.path when run as below

from fagan.data.io import read_volume
from fagan.data.normalize import fit_scaling
from fagan.data.sample import sample_volumes


def main() -> None:
    print(f"{'volume':<34}{'split':>6}{'background':>12}{'foreground':>12}")
    for sample in sample_volumes():
        volume = read_volume(sample.path).array.astype(np.float32)
        x = fit_scaling(volume).apply(volume)
        hh = np.abs(haar_hh(x))
        foreground = x[0 : hh.shape[0] * 2 : 2, 0 : hh.shape[1] * 2 : 2] > 0.1
        background = np.median(hh[~foreground]) / 0.6745 if (~foreground).any() else float("nan")
        tissue = np.median(hh[foreground]) / 0.6745 if foreground.any() else float("nan")
        print(f"{sample.name:<34}{sample.split:>6}{background:>12.4f}{tissue:>12.4f}")


if __name__ == "__main__":
    main()
