"""Training checkpoints: atomic, checksummed, the last few kept, loaded without unpickling code.

``RUN_DIR/checkpoints/step_00001000.pt`` holds a dict of tensors and plain types (weights,
optimiser states, step, data position, RNG states as tensors, the config) written with
``torch.save``; beside it ``step_00001000.pt.sha256`` holds the SHA-256 of those bytes. Both are
written to a temporary file and renamed into place, the checksum last, so a crash leaves either
a complete pair or a checkpoint without a checksum, which counts as damaged. On resume the
newest checkpoint whose bytes match their checksum is loaded (``torch.load(weights_only=True)``);
damaged ones are reported and skipped. A process killed mid-save (SIGKILL, power loss) cannot
remove its temporary file (``.step_00001000.pt.<random>.tmp``); the next save deletes such leftovers.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fagan import FaganError, atomic
from fagan.atomic import atomic_path

log = logging.getLogger(__name__)

FOLDER = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")


def _atomic_write(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The checkpoint files of a run, oldest first."""
    folder = Path(run_dir) / FOLDER
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def finished_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The checkpoints of a run whose save finished (their checksum was written), oldest first.
    A run killed during its first save has none: it has nothing to resume from."""
    return [p for p in list_checkpoints(run_dir) if _sidecar(p).is_file()]


def leftovers(run_dir: str | os.PathLike) -> list[Path]:
    """Temporary files of saves that were killed before they could clean up."""
    return atomic.leftovers(Path(run_dir) / FOLDER, r"step_\d+\.pt(?:\.sha256)?")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_checkpoint(run_dir: str | os.PathLike, step: int, payload: dict[str, Any], keep: int = 2) -> Path:
    """Write ``payload`` as the checkpoint of ``step`` and delete all but the newest ``keep``."""
    folder = Path(run_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in leftovers(run_dir):  # only this process saves, so these are from a killed one
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    path = folder / f"step_{step:08d}.pt"
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    _atomic_write(path, data)
    _atomic_write(_sidecar(path), f"{hashlib.sha256(data).hexdigest()}  {path.name}\n".encode())
    for old in list_checkpoints(run_dir)[:-keep]:
        for file in (old, _sidecar(old)):
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one checkpoint after checking its checksum; a damaged one is a FaganError."""
    path = Path(path)
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        raise FaganError(f"{path} has no checksum file (the save was interrupted)")
    data = path.read_bytes()
    expected = sidecar.read_text(encoding="utf-8").split()[0] if sidecar.stat().st_size else ""
    if hashlib.sha256(data).hexdigest() != expected:
        raise FaganError(f"{path} does not match its checksum (truncated or damaged)")
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise FaganError(f"{path} cannot be loaded ({type(exc).__name__}: {exc})") from None


def load_latest(
    run_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], Path]:
    """The newest intact checkpoint of ``run_dir`` and its path; damaged ones are logged and skipped."""
    paths = list_checkpoints(run_dir)
    if not paths:
        raise FaganError(f"{run_dir} holds no checkpoint ({FOLDER}/step_*.pt); nothing to resume or export")
    problems = []
    for path in reversed(paths):
        try:
            payload = read_checkpoint(path, map_location)
        except FaganError as exc:
            log.warning("skipping damaged checkpoint: %s", exc)
            problems.append(str(exc))
            continue
        if problems:
            log.warning("using the previous intact checkpoint %s", path)
        return payload, path
    raise FaganError(
        f"every checkpoint in {run_dir} is damaged ({'; '.join(problems)}); nothing can be resumed - "
        "train again into a new --out"
    )


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy and torch RNG states as tensors and plain types."""
    version, mt, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python_version": version,
        "python_state": torch.tensor(mt, dtype=torch.int64),
        "python_gauss": gauss,
        "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached_gaussian": float(cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate((state["python_version"], tuple(state["python_state"].tolist()), state["python_gauss"]))
    np.random.set_state(
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


__all__ = [
    "FOLDER",
    "leftovers",
    "list_checkpoints",
    "load_latest",
    "read_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
