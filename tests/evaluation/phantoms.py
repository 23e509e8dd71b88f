"""Small synthetic MR-like volumes and a manifest over them, for evaluation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fagan.data.io import write_nifti
from fagan.data.manifest import Manifest, ManifestEntry


def phantom(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A head-like phantom: a bright ellipse with blobs inside, dark air around, some noise."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    head = ((x / 0.8) ** 2 + (y / 0.7) ** 2 < 1).astype(np.float32)
    volume = np.zeros(shape, np.float32)
    for k in range(shape[2]):
        image = 300 * head
        for _ in range(4):
            cx, cy, r = rng.uniform(-0.4, 0.4, 2).tolist() + [rng.uniform(0.08, 0.25)]
            image += 400 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r**2) * head
        volume[..., k] = image + rng.normal(0, 5, image.shape)
    return volume


def phantom_manifest(folder: Path, shape: tuple[int, int, int] = (40, 40, 3)) -> Path:
    """Two training subjects, one validation subject and two test subjects; the manifest path."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, split in enumerate(("train", "train", "val", "test", "test")):
        path = folder / f"subject{i}.nii.gz"
        write_nifti(path, phantom(shape, i), np.diag([1.0, 1.0, 2.0, 1.0]), overwrite=True)
        entries.append(ManifestEntry(str(path), f"subject{i}", split))
    manifest = folder / "manifest.json"
    Manifest(entries).save(manifest, overwrite=True)
    return manifest
