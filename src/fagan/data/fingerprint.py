"""Fingerprints of volume files, so that weights can say which volumes they were trained on.

A release file lists the fingerprints of its training volumes (``trained_on``), and ``fagan
evaluate`` warns when a test volume is among them: its scores would not be held out. Paths do
not do for this (a data folder moves, or is copied to another machine), and whole-file hashes
cost a read of every training volume, so a fingerprint hashes what tells scans apart cheaply:
each file's size and its first and last 64 KiB (a header with its UIDs and dates, compressed or
raw voxel data). A DICOM series folder is fingerprinted over its files in name order. Names are
not hashed, so a renamed copy of a training volume is still recognised; a truncated SHA-256 (16
hex digits) keeps the list short and says nothing about the data.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 64 * 1024


def fingerprint(path: str | os.PathLike) -> str:
    """The fingerprint of a volume file, or of a folder holding one DICOM series."""
    path = Path(path)
    files = (
        sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if path.is_dir()
        else [path]
    )
    digest = hashlib.sha256()
    for file in files:
        size = file.stat().st_size
        digest.update(size.to_bytes(8, "little"))
        with open(file, "rb") as f:
            digest.update(f.read(CHUNK))
            if size > CHUNK:
                f.seek(max(CHUNK, size - CHUNK))
                digest.update(f.read(CHUNK))
    return digest.hexdigest()[:16]


__all__ = ["fingerprint"]
