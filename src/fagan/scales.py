"""The magnifications fagan supports: each is log2(s) x2 upsampling stages of the generator."""

from __future__ import annotations

from fagan import FaganError

SCALES: tuple[int, ...] = (2, 4, 8)


def check_scale(scale: int) -> int:
    """Return ``scale`` if it is one of :data:`SCALES`, else raise FaganError listing them."""
    if isinstance(scale, bool) or scale not in SCALES:
        raise FaganError(f"scale must be one of {', '.join(map(str, SCALES))}, got {scale!r}")
    return int(scale)
