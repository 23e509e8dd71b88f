"""What a person watches: JSON-lines logs, loss curves as PNG, optional TensorBoard."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from fagan import FaganError

TRAIN_LOG = "train.log"
LOSSES = "losses.jsonl"
VALIDATION = "validation.jsonl"
CURVES = "loss_curves.png"
GENERATOR_TERMS = ("g_total", "pixel", "perceptual", "adversarial")
DISCRIMINATOR_TERMS = ("d_total", "d_real", "d_fake")


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonLines:
    """Appends one JSON object per line to ``path``; flushed after each record."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.file = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps({k: _finite(v) for k, v in record.items()}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a torn last line (a crash mid-write) is ignored."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_after(path: str | os.PathLike, step: int) -> None:
    """Drop the records of steps after ``step`` (written by a run that is now resumed from ``step``)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    os.replace(tmp, path)


def plot_loss_curves(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Generator terms and discriminator loss against the step (as the paper's Figs. 10-11),
    with validation PSNR when there is any; written with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / CURVES
    losses = [r for r in read_jsonl(run_dir / LOSSES) if not r.get("skipped")]
    validation = read_jsonl(run_dir / VALIDATION)
    panels = [("generator", GENERATOR_TERMS), ("discriminator", DISCRIMINATOR_TERMS)]
    fig, axes = plt.subplots(1, 3 if validation else 2, figsize=(15 if validation else 10, 4))
    for ax, (title, terms) in zip(axes, panels, strict=False):
        for term in terms:
            points = [(r["step"], r[term]) for r in losses if r.get(term) is not None]
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, label=term, linewidth=1)
        ax.set(title=f"{title} loss", xlabel="step", ylabel="loss")
        if ax.lines:
            ax.legend()
            if all(v > 0 for line in ax.lines for v in line.get_ydata()):
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "not trained", ha="center", va="center", transform=ax.transAxes)
    if validation:
        ax = axes[2]
        steps = [r["step"] for r in validation]
        ax.plot(steps, [r["psnr"] for r in validation], marker="o", label="SR (EMA)")
        ax.plot(steps, [r["bicubic_psnr"] for r in validation], linestyle="--", label="bicubic")
        ax.set(title="validation PSNR", xlabel="step", ylabel="PSNR (dB)")
        ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def tensorboard_writer(log_dir: str | os.PathLike) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter``; a FaganError when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise FaganError(
            "--tensorboard needs the tensorboard package, which is not installed; "
            "pip install tensorboard, or train without --tensorboard"
        ) from None
    return SummaryWriter(log_dir=str(log_dir))


def image_triplet(bicubic: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Bicubic, SR and HR side by side, clipped to [0, 1]: three ``(1, H, W)`` -> ``(1, H, 3W + 4)``."""
    gap = torch.ones_like(hr[..., :2])
    return torch.cat([bicubic, gap, sr, gap, hr], dim=-1).clamp(0, 1)


__all__ = [
    "CURVES",
    "LOSSES",
    "TRAIN_LOG",
    "VALIDATION",
    "JsonLines",
    "image_triplet",
    "plot_loss_curves",
    "read_jsonl",
    "tensorboard_writer",
    "truncate_after",
]
