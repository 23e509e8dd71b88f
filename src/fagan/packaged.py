"""Finding a data file inside an installed package without importing the package.

fagan uses pretrained networks that other PyPI packages ship (the FID Inception network, an
ImageNet VGG16): installing the package is the offline way to get the file, and importing it is
not needed (and would pull its own dependencies, such as torchvision).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_file(package: str, relative: str) -> Path | None:
    """``relative`` inside the installed top-level ``package``, or None if either is missing."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None
