"""Figures a person looks at: comparison panels with a zoomed region and error maps (the paper's
Figs. 6-9), and an HTML page that holds them."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def busiest_region(image: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size``-square window with the most gradient energy."""
    gy, gx = np.gradient(image.astype(np.float64))
    energy = np.pad(gx**2 + gy**2, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    h, w = image.shape
    size = min(size, h, w)
    sums = energy[size:, size:] - energy[:-size, size:] - energy[size:, :-size] + energy[:-size, :-size]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x)


def save_png(fig: Any, path: str | Path, dpi: int = 80) -> Path:
    """Save a matplotlib figure as a PNG with an adaptive 256-colour palette: grey images and one
    colour map survive it unchanged to the eye, at about a third of the file size."""
    from PIL import Image

    fig.set_dpi(dpi)
    fig.canvas.draw()
    rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
    path = Path(path)
    rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def comparison_figure(
    hr: np.ndarray,
    methods: Mapping[str, np.ndarray],
    title: str,
    path: str | Path,
    pixel_mm: tuple[float, float] = (1.0, 1.0),
) -> Path:
    """HR and each method's slice (rows: full slice with the zoom box, zoomed region, |error|).

    ``hr`` and each method: (H, W) in the same intensity units. Every panel shares one grey
    window (HR's 0.5th-99.5th percentiles) and every error map one scale (0 to half the largest
    error), with a colour bar; a second title line gives both in the images' units.
    ``pixel_mm``: the pixel's size along the slice's two axes, so that the images keep the
    anatomy's proportions when the pixels are not square.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    columns = {"HR": hr, **methods}
    aspect = pixel_mm[1] / pixel_mm[0]  # images are drawn transposed: rows follow the second axis
    lo, hi = np.percentile(hr, [0.5, 99.5])
    zoom = max(16, min(hr.shape) // 4)
    y, x = busiest_region(hr, zoom)
    err_max = max(float(np.abs(v - hr).max()) for v in methods.values()) or 1.0
    fig, axes = plt.subplots(
        3, len(columns), figsize=(2.6 * len(columns) + 0.6, 7.8), squeeze=False, layout="constrained"
    )
    for col, (name, image) in enumerate(columns.items()):
        top, mid, bottom = axes[0, col], axes[1, col], axes[2, col]
        top.imshow(image.T, cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspect)
        top.add_patch(Rectangle((y - 0.5, x - 0.5), zoom, zoom, fill=False, edgecolor="yellow", lw=1))
        top.set_title(name, fontsize=10)
        crop = image[y : y + zoom, x : x + zoom].T
        mid.imshow(crop, cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspect)
        if name == "HR":
            bottom.axis("off")
        else:
            shown = bottom.imshow(
                np.abs(image - hr).T, cmap="magma", vmin=0, vmax=0.5 * err_max, origin="lower", aspect=aspect
            )
            bottom.set_title(f"|{name} - HR|", fontsize=9)
        for ax in (top, mid, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    if methods:
        fig.colorbar(shown, ax=list(axes[2, 1:]), fraction=0.05, pad=0.02, label="|error|")
    scale_line = f"grey window {lo:.4g} to {hi:.4g}; |error| shown from 0 to {0.5 * err_max:.4g}"
    fig.suptitle(f"{title}\n{scale_line}", fontsize=10)
    path = Path(path)
    save_png(fig, path, dpi=80)
    plt.close(fig)
    return path


def image_tag(path: Path) -> str:
    """An <img> element with the PNG at ``path`` embedded as a data URL."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def figure_tag(path: Path) -> str:
    """A <figure> with the embedded PNG and its file stem as the caption."""
    return f"<figure>{image_tag(path)}<figcaption>{html.escape(path.stem)}</figcaption></figure>"


def html_page(
    title: str, tables: Sequence[tuple[str, str]], figures: Sequence[Path], path: str | Path
) -> Path:
    """A self-contained HTML page: ``tables`` are (caption, pre-formatted text), figures are PNGs
    embedded inline so the file can be mailed or opened anywhere."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "pre{background:#f4f4f4;padding:1em;overflow:auto}img{max-width:100%;margin:1em 0}</style>",
        f"</head><body><h1>{html.escape(title)}</h1>",
    ]
    for caption, text in tables:
        parts.append(f"<h2>{html.escape(caption)}</h2><pre>{html.escape(text)}</pre>")
    parts += [figure_tag(Path(f)) for f in figures]
    parts.append("</body></html>")
    path = Path(path)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
