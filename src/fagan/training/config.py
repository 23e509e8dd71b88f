"""Training configuration: frozen dataclasses loaded from YAML, strict about keys.

A configuration file has the sections ``model``, ``data``, ``loss``, ``optim`` and
``schedule`` plus the top-level ``seed`` and ``deterministic``; every key may be left out to
take its default (:class:`TrainConfig` documents them). An unknown key, at any depth, is an
error naming it and the valid keys; a value of the wrong type is an error naming the key.

Command-line overrides use one syntax, ``KEY=VALUE``, where ``KEY`` is a dotted path and
``VALUE`` is parsed with ``yaml.safe_load`` (so ``100`` is an int, ``1e-4`` a float, ``null``
is None, ``[2, 1]`` a list; a float key also accepts ``1e-4``, which YAML 1.1 reads as a
string)::

    fagan train --config configs/fagan_x4.yaml --set schedule.steps=100 \\
        --set model.overrides.channels=32 --set data.axes=[0,1,2]

Keys inside the free-form dicts ``model.overrides`` (generator options) and
``model.discriminator`` (discriminator options) are checked when the networks are built.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fagan import FaganError
from fagan.data.datasets import CONTRAST_KNOT_PLACEMENTS, ZOOM_METHODS


@dataclass(frozen=True)
class ModelConfig:
    """Which generator, at which scale, and how to start it."""

    name: str = "fagan"  # a key of fagan.models.GENERATORS
    scale: int = 4
    overrides: dict[str, Any] = field(default_factory=dict)  # GeneratorConfig fields
    discriminator: dict[str, Any] = field(default_factory=dict)  # DiscriminatorConfig fields
    init_weights: str | None = None  # a release .safetensors (this scale or a smaller one) to start from


#: How training slices are drawn: each slice equally often, or each volume equally often.
BALANCES = ("slices", "volumes")
#: The named configs of a source checkout (``configs/``, beside ``src/``); absent in an installed wheel.
REPOSITORY_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@dataclass(frozen=True)
class DataConfig:
    """Training patches and validation slices."""

    manifest: str | None = None  # manifest JSON / folder; None = the embedded sample data
    axes: tuple[int, ...] = (2,)  # volume axes slices are cut along
    patch_size: int = 96  # HR patch side (pixels), a multiple of the scale
    batch_size: int = 16  # per process
    augment: bool = True  # random flips and 90-degree rotations
    degradation: str = "bicubic"  # or "kspace"
    min_foreground: float = 0.05
    zoom_range: tuple[float, float] | None = None  # random resize of training slices, e.g. [0.5, 1.0]
    zoom_method: str = "bicubic"  # or "kspace": shrink by cropping k-space (Gibbs ringing, as in scans)
    noise_range: tuple[float, float] | None = None  # Rician noise level of HR patches, e.g. [0, 0.05]
    contrast_prob: float = 0.0  # fraction of HR patches sent through a random intensity curve
    contrast_knots: str = "even"  # or "tissue": the curve's knots at the volume's tissue intensities
    gain_range: tuple[float, float] | None = None  # HR patch times a log-uniform gain, e.g. [0.8, 1.4]
    offset_range: tuple[float, float] | None = None  # then plus a uniform offset, e.g. [-0.25, 0.05]
    balance: str = "slices"  # "slices": every slice equally often; "volumes": every volume file
    num_workers: int | None = None  # None: 0 on CPU, min(8, CPUs) on CUDA
    val_slices: int = 32  # cap on full validation slices (evenly spaced over the volume files)


@dataclass(frozen=True)
class LossConfig:
    """Loss terms and weights (defaults from SRGAN; see fagan.losses.combined)."""

    pixel: str = "mse"  # or "l1"
    pixel_weight: float = 1.0
    perceptual_weight: float = 1.0  # 0 switches the VGG loss off
    perceptual_network: str = "vgg19"  # or "vgg16"
    perceptual_layer: str = "relu5_4"  # SRGAN's phi_{5,4}
    perceptual_scale: float = 1 / 12.75  # SRGAN's feature rescaling
    adversarial_weight: float = 1e-3  # 0: no discriminator (PSNR-oriented training)


@dataclass(frozen=True)
class OptimConfig:
    """Adam for both networks, with an optional step decay of the learning rates."""

    lr: float = 1e-4  # generator
    d_lr: float = 1e-4  # discriminator
    betas: tuple[float, float] = (0.9, 0.999)
    lr_milestones: tuple[int, ...] = ()  # steps at which both rates are multiplied by lr_gamma
    lr_gamma: float = 0.1


@dataclass(frozen=True)
class ScheduleConfig:
    """How long, and how often to validate, checkpoint and log."""

    steps: int = 20000  # total optimisation steps (warm-up included)
    warmup_steps: int = 0  # first steps on the pixel loss alone (no discriminator)
    ema_decay: float = 0.999  # 0 switches the EMA generator off
    checkpoint_every: int = 1000
    validate_every: int = 1000
    log_every: int = 10  # progress-bar refresh (losses are written every step)
    keep_checkpoints: int = 2
    max_bad_steps: int = 10  # NaN/Inf losses in a row that stop the run


@dataclass(frozen=True)
class TrainConfig:
    """The whole training configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms (CPU runs are reproducible anyway)

    def __post_init__(self) -> None:
        check(self)

    @property
    def adversarial(self) -> bool:
        return self.loss.adversarial_weight != 0

    @property
    def perceptual(self) -> bool:
        return self.loss.perceptual_weight != 0

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe types (tuples become lists)."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check(config: TrainConfig) -> None:
    """Value checks that types alone cannot express; raise FaganError naming the key."""
    from fagan.losses.perceptual import VGG_CONFIGS, layer_end
    from fagan.losses.pixel import PIXEL_LOSSES
    from fagan.models import GENERATORS, SCALES

    def fail(key: str, message: str) -> None:
        raise FaganError(f"config key {key}: {message}")

    m, d, lo, o, s = config.model, config.data, config.loss, config.optim, config.schedule
    if m.name not in GENERATORS:
        fail("model.name", f"unknown generator {m.name!r}; valid: {', '.join(GENERATORS)}")
    if m.scale not in SCALES:
        fail("model.scale", f"must be one of {', '.join(map(str, SCALES))}, not {m.scale}")
    if d.patch_size <= 0 or d.patch_size % m.scale:
        fail("data.patch_size", f"must be a positive multiple of the scale {m.scale}, not {d.patch_size}")
    if not d.axes or any(a not in (0, 1, 2) for a in d.axes) or len(set(d.axes)) != len(d.axes):
        fail("data.axes", f"must be distinct values among 0, 1, 2, not {list(d.axes)}")
    for key, value, low in (
        ("data.batch_size", d.batch_size, 1),
        ("data.val_slices", d.val_slices, 0),
        ("schedule.steps", s.steps, 1),
        ("schedule.warmup_steps", s.warmup_steps, 0),
        ("schedule.checkpoint_every", s.checkpoint_every, 1),
        ("schedule.validate_every", s.validate_every, 1),
        ("schedule.log_every", s.log_every, 1),
        ("schedule.keep_checkpoints", s.keep_checkpoints, 2),
        ("schedule.max_bad_steps", s.max_bad_steps, 1),
    ):
        if value < low:
            fail(key, f"must be at least {low}, not {value}")
    if d.balance not in BALANCES:
        fail("data.balance", f"must be one of {', '.join(BALANCES)}, not {d.balance!r}")
    if d.zoom_method not in ZOOM_METHODS:
        fail("data.zoom_method", f"must be one of {', '.join(ZOOM_METHODS)}, not {d.zoom_method!r}")
    if not 0.0 <= d.contrast_prob <= 1.0:
        fail("data.contrast_prob", f"must lie in [0, 1], not {d.contrast_prob}")
    if d.contrast_knots not in CONTRAST_KNOT_PLACEMENTS:
        fail(
            "data.contrast_knots",
            f"must be one of {', '.join(CONTRAST_KNOT_PLACEMENTS)}, not {d.contrast_knots!r}",
        )
    if d.num_workers is not None and d.num_workers < 0:
        fail("data.num_workers", f"must be at least 0 (or null for automatic), not {d.num_workers}")
    if lo.pixel not in PIXEL_LOSSES:
        fail("loss.pixel", f"must be one of {', '.join(PIXEL_LOSSES)}, not {lo.pixel!r}")
    if lo.perceptual_network not in VGG_CONFIGS:
        fail(
            "loss.perceptual_network",
            f"must be one of {', '.join(VGG_CONFIGS)}, not {lo.perceptual_network!r}",
        )
    try:
        layer_end(lo.perceptual_network, lo.perceptual_layer)
    except FaganError as exc:
        fail("loss.perceptual_layer", str(exc))
    for key, value in (
        ("loss.pixel_weight", lo.pixel_weight),
        ("loss.perceptual_weight", lo.perceptual_weight),
        ("loss.adversarial_weight", lo.adversarial_weight),
        ("optim.lr", o.lr),
        ("optim.d_lr", o.d_lr),
    ):
        if not math.isfinite(value) or value < 0:  # a learning rate of 0 keeps the weights as they are
            fail(key, f"must be a finite number of at least 0, not {value}")
    if not math.isfinite(o.lr_gamma) or o.lr_gamma <= 0:
        fail("optim.lr_gamma", f"must be a finite number above 0, not {o.lr_gamma}")
    if any(m < 0 for m in o.lr_milestones):
        fail("optim.lr_milestones", f"must be steps of at least 0, not {list(o.lr_milestones)}")
    if not 0 <= s.ema_decay < 1:
        fail("schedule.ema_decay", f"must lie in [0, 1), not {s.ema_decay}")
    if not all(0 <= b < 1 for b in o.betas):
        fail("optim.betas", f"must lie in [0, 1), not {list(o.betas)}")


# ---------------------------------------------------------------------------------------------
# Building dataclasses from plain data, strictly.


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """``value`` checked against ``annotation`` (the few types used above), lists -> tuples."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise FaganError(f"config key {key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise FaganError(f"config key {key}: expected a list of {len(args)} values, got {list(value)!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise FaganError(f"config key {key}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation is Any:
        return value
    name = getattr(annotation, "__name__", str(annotation))
    raise FaganError(f"config key {key}: expected {name}, got {value!r}")


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types are FaganErrors."""
    where = prefix or "the top level"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FaganError(f"config section {where}: expected a mapping of keys, got {data!r}")
    hints = _hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in valid:
            full = f"{prefix}.{key}" if prefix else str(key)
            raise FaganError(f"unknown config key {full}; valid keys at {where}: {', '.join(valid)}")
    values = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else str(k)) for k, v in data.items()}
    return cls(**values)


def parse_assignment(
    assignment: str, flag: str = "--set", example: str = "schedule.steps=100"
) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(KEY, VALUE parsed as YAML)``; a FaganError naming ``flag`` if malformed."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise FaganError(f"{flag} expects KEY=VALUE (e.g. {example}), got {assignment!r}")
    try:
        return key, yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FaganError(f"{flag} {key}: the value {text!r} is not valid YAML ({exc})") from None


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``KEY=VALUE`` override (dotted key, YAML value) to raw config ``data`` in place."""
    key, value = parse_assignment(assignment)
    parts = key.split(".")
    cls: Any = TrainConfig
    node = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if cls is not None:
            names = [f.name for f in dataclasses.fields(cls)]
            if part not in names:
                here = ".".join(parts[:depth]) or "the top level"
                full = ".".join(parts[: depth + 1])
                raise FaganError(f"unknown config key {full}; valid keys at {here}: {', '.join(names)}")
            annotation = _hints(cls)[part]
            cls = annotation if dataclasses.is_dataclass(annotation) else None
            if not last and cls is None and typing.get_origin(annotation) is not dict:
                raise FaganError(f"config key {'.'.join(parts[: depth + 1])} is a value, not a section")
        if last:
            node[part] = value
        else:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise FaganError(f"config key {'.'.join(parts[: depth + 1])} is not a mapping")
            node = child


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The raw mapping in a YAML config file."""
    path = Path(path)
    if not path.is_file():
        # Run from outside a source checkout, the README's configs/... paths miss: name the file.
        ours = REPOSITORY_CONFIGS / path.name
        hint = f" (the repository's config of that name is {ours})" if ours.is_file() else ""
        raise FileNotFoundError(f"config file not found: {path}{hint}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise FaganError(f"{path} is not valid YAML ({' '.join(str(exc).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FaganError(f"{path}: a config file is a mapping of sections (model, data, loss, ...)")
    return data


def load_config(path: str | os.PathLike | None = None, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (or start from the defaults), apply ``KEY=VALUE`` overrides, validate."""
    data = read_yaml(path) if path is not None else {}
    for assignment in overrides:
        apply_override(data, assignment)
    return from_dict(TrainConfig, data)


def save_config(config: TrainConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` as YAML (atomically)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dump_config(config), encoding="utf-8")
    os.replace(tmp, path)
    return path


def dump_config(config: TrainConfig) -> str:
    """``config`` as YAML text, sections in declaration order."""
    return yaml.dump(config.to_dict(), Dumper=_Dumper, sort_keys=False)


class _Dumper(yaml.SafeDumper):
    """Block-style mappings, flow-style lists (``axes: [2]``)."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


__all__ = [
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_override",
    "dump_config",
    "from_dict",
    "load_config",
    "read_yaml",
    "save_config",
]
