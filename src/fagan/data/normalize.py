"""Per-volume robust intensity normalisation to [0, 1], invertible back to the input's units."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from fagan import FaganError

ArrayT = TypeVar("ArrayT")


@dataclass(frozen=True)
class IntensityScaling:
    """The linear map ``x -> (x - low) / (high - low)`` fitted to one volume.

    Works on numpy arrays and torch tensors alike and never clips, so ``invert(apply(x)) == x``
    (up to rounding) and network outputs map back to the input's intensity units.
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.high > self.low):
            raise FaganError(
                f"IntensityScaling needs finite low < high, got low={self.low}, high={self.high}"
            )

    def apply(self, x: ArrayT) -> ArrayT:
        """Map input intensities to the normalised scale (any shape)."""
        return (x - self.low) / (self.high - self.low)  # type: ignore[operator,return-value]

    def invert(self, y: ArrayT) -> ArrayT:
        """Map normalised values back to the input's intensity units (any shape)."""
        return y * (self.high - self.low) + self.low  # type: ignore[operator,return-value]

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


def fit_scaling(array: object, p_low: float = 0.5, p_high: float = 99.5) -> IntensityScaling:
    """Fit a robust per-volume scaling from intensity percentiles.

    ``low`` is the ``p_low`` percentile of *all* voxels, so the background of a typical MRI
    (zeros or noise) maps to about 0. ``high`` is the ``p_high`` percentile of the voxels
    *above* ``low`` (the foreground), so a large empty background - 70 % of a skull-stripped
    brain template - does not pull ``high`` down into the tissue. Afterwards the bulk of the
    tissue lies in [0, 1]; a few bright voxels lie above 1 (nothing is clipped here).

    ``array``: numpy array or torch tensor of any shape. Raises FaganError for a constant image
    or percentiles outside 0 <= p_low < p_high <= 100.
    """
    if not (0.0 <= p_low < p_high <= 100.0):
        raise FaganError(f"percentiles must satisfy 0 <= p_low < p_high <= 100, got {p_low}, {p_high}")
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()  # type: ignore[attr-defined]
    values = np.asarray(array, dtype=np.float32).ravel()
    if values.size == 0:
        raise FaganError("cannot fit an intensity scaling to an empty array")
    if not np.isfinite(values).all():
        raise FaganError("the image holds NaN or infinite values; replace them before normalising")
    low = float(np.percentile(values, p_low))
    above = values[values > low]
    if above.size == 0:
        raise FaganError(
            f"the image is constant ({low:g} everywhere below the {p_high} percentile); "
            "it holds nothing to normalise - check the input file"
        )
    high = float(np.percentile(above, p_high))
    if not high > low:  # pragma: no cover - above > low guarantees this for finite data
        high = float(above.max())
    return IntensityScaling(low, high)


__all__ = ["IntensityScaling", "fit_scaling"]
