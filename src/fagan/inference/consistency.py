"""Data consistency: make a super-resolved slice reproduce its low-resolution input exactly.

The networks are trained to invert one forward model, ``lr = degrade(hr)`` (antialiased
bicubic downsampling, :func:`fagan.data.degrade.degrade`). Their output ``x`` only nearly
satisfies it. :func:`project_onto_input` replaces ``x`` by the image closest to it (in the
least-squares sense) among all images that the forward model maps exactly onto ``lr``:

    P(x) = x - D^+ (D x - lr),    D^+ = D^T (D D^T)^-1.

Antialiased bicubic downsampling is separable, ``D x = A_h x A_w^T`` with one matrix per axis,
so ``D^+`` is the same pair of (pseudo-inverse) matrices and the projection is two small matrix
products per slice, exact, with no iterations.

Why it helps: the set ``{x : D x = lr}`` is an affine subspace that contains the true image
whenever the forward model holds, and an orthogonal projection onto a set that contains a point
never moves anything further from that point: ``|P(x) - hr|^2 = |x - hr|^2 - |x - P(x)|^2``.
So under the model the networks were trained for, the projection cannot increase the error of
any slice; by how much it lowers it is measured in ``docs/model-choices.md``. On a scan whose
low resolution came from another process (k-space truncation, a different blur) it enforces the
assumed model instead, which is why ``fagan upscale`` has ``--no-consistency``.
"""

from __future__ import annotations

import functools

import torch

from fagan.data.degrade import degrade


@functools.lru_cache(maxsize=16)
def downsampling_matrix(length: int, scale: int) -> torch.Tensor:
    """The 1D antialiased bicubic downsampling of ``length`` samples by ``scale`` as a float64
    matrix ``(length // scale, length)``, read off :func:`fagan.data.degrade.degrade` itself.

    Column ``i`` is the downsampled unit impulse at ``i``: each impulse is an image of ``scale``
    identical rows, which the other axis maps onto one row unchanged (its weights sum to 1). (The
    transposed layout, one-pixel-wide output columns, gives wrong weights in torch 2.13.)
    """
    impulses = torch.eye(length, dtype=torch.float64)[:, None, None, :].expand(length, 1, scale, length)
    return degrade(impulses.contiguous(), scale, "bicubic")[:, 0, 0, :].T.contiguous()


@functools.lru_cache(maxsize=16)
def _pseudo_inverse(length: int, scale: int) -> torch.Tensor:
    return torch.linalg.pinv(downsampling_matrix(length, scale))


def project_onto_input(sr: torch.Tensor, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The image closest to ``sr`` (B, C, s*h, s*w) whose antialiased bicubic downsampling is
    exactly ``lr`` (B, C, h, w); computed in float64, returned in ``sr``'s dtype."""
    height, width = sr.shape[-2:]
    if lr.shape[-2:] != (height // scale, width // scale) or height % scale or width % scale:
        raise ValueError(
            f"an x{scale} output of {height}x{width} does not belong to an input of "
            f"{lr.shape[-2]}x{lr.shape[-1]}"
        )
    device = sr.device
    a_h, a_w = (downsampling_matrix(n, scale).to(device) for n in (height, width))
    p_h, p_w = (_pseudo_inverse(n, scale).to(device) for n in (height, width))
    x = sr.double()
    residual = a_h @ x @ a_w.T - lr.double()
    return (x - p_h @ residual @ p_w.T).to(sr.dtype)


__all__ = ["downsampling_matrix", "project_onto_input"]
