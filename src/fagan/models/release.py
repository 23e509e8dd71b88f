"""Release weights: generator-only safetensors files that describe themselves.

A release file holds the generator's ``state_dict`` (floating tensors stored as float16 by
default, which halves the size and costs nothing measurable in PSNR) and string metadata: the
format tag, the model name, the scale, the full :class:`GeneratorConfig` as JSON, and anything
else the caller adds (training steps, data, held-out scores). Loading never unpickles anything,
so a hostile file cannot run code, and every mismatch is a :class:`fagan.FaganError` with one line
that says what to do.

The weights shipped inside the package live in ``fagan/weights/`` as ``fagan_x{scale}.safetensors``
(the default, PSNR-oriented) and ``fagan_x{scale}_gan.safetensors`` (adversarially fine-tuned).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from fagan import FaganError
from fagan.atomic import atomic_path
from fagan.models.config import GeneratorConfig
from fagan.models.generator import Generator
from fagan.scales import SCALES, check_scale

FORMAT = "fagan-generator"
FORMAT_VERSION = "1"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"
#: The file ``fagan train`` writes its finished generator to, in the run folder.
RUN_RELEASE = "release.safetensors"
VARIANTS = {"psnr": "", "gan": "_gan"}


def save_release(
    path: str | os.PathLike,
    generator: Generator,
    name: str,
    metadata: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write ``generator`` as a release file, atomically (temporary file + rename)."""
    path = Path(path)
    tensors = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in generator.state_dict().items()
    }
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    meta.update(
        tensors_sha256=tensors_digest(tensors),
        format=FORMAT,
        format_version=FORMAT_VERSION,
        model=name,
        scale=str(generator.scale),
        config=json.dumps(dataclasses.asdict(generator.config)),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
    return path


_EXPORT_HINT = "; make weights from a training run with `fagan train --export RUN_DIR --out W.safetensors`"


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a release file, checked to be one."""
    path = Path(path)
    if path.is_dir():
        release = path / RUN_RELEASE
        hint = f"; a finished run's weights are {release}" if release.is_file() else _EXPORT_HINT
        raise FaganError(f"{path} is a folder, not a weights file{hint}")
    if not path.is_file():
        shipped = SHIPPED_DIR / path.name
        hint = f" (a shipped file of that name is {shipped})" if shipped.is_file() else ""
        raise FaganError(f"weights file not found: {path}{hint}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        checkpoint = path.suffix == ".pt" and path.parent.name == "checkpoints"
        hint = _EXPORT_HINT if checkpoint else ""
        raise FaganError(f"{path} is not a readable safetensors weights file ({exc}){hint}") from None
    if meta.get("format") != FORMAT:
        raise FaganError(f"{path} is not a fagan generator release file (no '{FORMAT}' metadata)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise FaganError(f"{path} has release format version {meta.get('format_version')!r}; expected 1")
    scale = meta.get("scale")
    if scale not in {str(s) for s in SCALES}:
        raise FaganError(
            f"{path} names no valid scale ({scale!r}; expected one of {', '.join(map(str, SCALES))})"
        )
    if not meta.get("model"):
        raise FaganError(f"{path} does not name its model")
    return meta


def trained_degradation(meta: dict[str, str]) -> str:
    """The degradation (``data.degradation``) the weights were trained to invert, from their
    training config; ``"bicubic"``, the default, when the file does not record one."""
    config = _json_field(meta, "train_config", {})
    data = config.get("data") if isinstance(config, dict) else None
    return str(data.get("degradation", "bicubic")) if isinstance(data, dict) else "bicubic"


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a release's tensors (names, dtypes, shapes and bytes, in name order): written
    into each release and checked when it is loaded, so that flipped bytes in a copied file are
    refused rather than scored (safetensors checks the header, not the data). Files from before
    the checksum load unchecked."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_release(
    path: str | os.PathLike, scale: int | None = None, device: str | torch.device = "cpu"
) -> tuple[Generator, dict[str, str]]:
    """Rebuild the generator stored in ``path`` (float32, eval mode) and return it with its metadata.

    ``scale``, when given, must be the scale the weights were trained for.
    """
    meta = read_metadata(path)
    stored = int(meta["scale"])
    if scale is not None and scale != stored:
        raise FaganError(f"{path} holds x{stored} weights but x{scale} was asked for; give x{scale} weights")
    try:
        config = GeneratorConfig(**json.loads(meta["config"]))
    except (TypeError, ValueError, KeyError) as exc:
        raise FaganError(f"{path} has an unreadable generator configuration ({exc})") from None
    generator = Generator(config, stored)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise FaganError(f"{path} is damaged: its tensors cannot be read ({exc})") from None
    expected = generator.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise FaganError(f"{path} does not match the '{meta['model']}' architecture it names (e.g. {first})")
    if "tensors_sha256" in meta and tensors_digest(state) != meta["tensors_sha256"]:
        raise FaganError(
            f"{path} is damaged: its tensors differ from the checksum written with them; copy or "
            "download the file again"
        )
    generator.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    for value in generator.state_dict().values():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise FaganError(f"{path} holds NaN or infinite weights")
    return generator.to(device).eval(), meta


def average_releases(
    paths: Sequence[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Write the element-wise mean of the weights in ``paths`` as a release file ``out``.

    Averaging the weights of runs fine-tuned from one starting point (a "model soup", Wortsman
    et al. 2022) often scores above each of them, at no cost at inference. The files must hold
    the same model, scale and generator configuration and have been trained to invert the same
    degradation (so that ``fagan upscale`` treats the average as it would each of them);
    anything else is a FaganError. ``out`` is never one of the inputs, an existing ``out`` is
    replaced only with ``overwrite``, and the file is written atomically. Its metadata lists
    the averaged files (``averaged_from``) and each one's training configuration
    (``averaged_train_configs``); an input that is itself an average appears there with what it
    was averaged from (``{"file": name, "averaged_from": [...]}``) and the list of its inputs'
    configurations, so the whole history of a repeated average stays in the file.
    ``train_config`` is the first one's. Nothing can check that the files share a starting point:
    averaging unrelated runs gives a broken model.
    """
    if len(paths) < 2:
        raise FaganError(f"averaging needs at least two weights files, got {len(paths)}")
    resolved = {Path(p).resolve() for p in paths}
    if len(resolved) < len(paths):
        raise FaganError("a weights file is named twice; give each file to average once")
    out = Path(out)
    if out.resolve() in resolved:
        raise FileExistsError(f"{out} is one of the files to average; write the average elsewhere")
    if out.is_dir():
        raise FileExistsError(f"{out} is a folder; give the .safetensors file to write")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    first, meta = load_release(paths[0])
    total = {k: v.clone() for k, v in first.state_dict().items()}
    sources, configs = [_provenance(paths[0], meta)], [_train_configs(meta)]
    trained_on = set(trained_fingerprints(meta))
    for path in paths[1:]:
        generator, other = load_release(path)
        for key in ("model", "scale", "config"):
            if other[key] != meta[key]:
                raise FaganError(
                    f"{path} and {paths[0]} differ in their {key}; only like weights can be averaged"
                )
        if trained_degradation(other) != trained_degradation(meta):
            raise FaganError(
                f"{path} and {paths[0]} were trained for different degradations; average only "
                "files trained for the same one"
            )
        sources.append(_provenance(path, other))
        configs.append(_train_configs(other))
        trained_on |= trained_fingerprints(other)
        for key, value in generator.state_dict().items():
            if value.is_floating_point():
                total[key] += value
    first.load_state_dict({k: v / len(paths) if v.is_floating_point() else v for k, v in total.items()})
    metadata = {
        "averaged_from": sources,
        "data": meta.get("data", ""),
        "train_config": meta.get("train_config", "{}"),
        "averaged_train_configs": configs,
        "trained_on": sorted(trained_on),  # every input's training volumes
    }
    return save_release(out, first, meta["model"], metadata=metadata)


def trained_fingerprints(meta: dict[str, str]) -> frozenset[str]:
    """The fingerprints (:mod:`fagan.data.fingerprint`) of the volumes a release was trained on;
    empty for files made before releases recorded them (the shipped ones among them)."""
    value = _json_field(meta, "trained_on", [])
    return frozenset(v for v in value if isinstance(v, str)) if isinstance(value, list) else frozenset()


def _json_field(meta: dict[str, str], key: str, default: Any) -> Any:
    """``meta[key]`` parsed as JSON; ``default`` when it is missing or not JSON."""
    try:
        return json.loads(meta[key])
    except (KeyError, json.JSONDecodeError):
        return default


def _provenance(path: str | os.PathLike, meta: dict[str, str]) -> str | dict[str, Any]:
    """The name of a file to average and, if it is an average itself, what it was averaged from."""
    name = Path(path).name
    if "averaged_from" not in meta:
        return name
    return {"file": name, "averaged_from": _json_field(meta, "averaged_from", [])}


def _train_configs(meta: dict[str, str]) -> Any:
    """A file's training configuration, or the list of its inputs' if it is an average itself."""
    if "averaged_train_configs" in meta:
        return _json_field(meta, "averaged_train_configs", [])
    return _json_field(meta, "train_config", {})


def _shipped_path(scale: int, variant: str) -> Path:
    if variant not in VARIANTS:
        raise FaganError(f"unknown weights variant {variant!r}; valid: {', '.join(VARIANTS)}")
    return SHIPPED_DIR / f"fagan_x{scale}{VARIANTS[variant]}.safetensors"


def shipped_scales(variant: str = "psnr") -> list[int]:
    """The scales that have shipped weights of ``variant``, smallest first."""
    return [scale for scale in SCALES if _shipped_path(scale, variant).is_file()]


def shipped_weights(scale: int, variant: str = "psnr") -> Path:
    """Path of the weights shipped for ``scale``; a clear error when there are none."""
    check_scale(scale)
    path = _shipped_path(scale, variant)
    if not path.is_file():
        have = sorted(p.name for p in SHIPPED_DIR.glob("*.safetensors")) if SHIPPED_DIR.is_dir() else []
        raise FaganError(
            f"no shipped {variant} weights for x{scale} (shipped: {', '.join(have) or 'none'}); "
            "train them with 'fagan train' and pass --weights PATH"
        )
    return path
