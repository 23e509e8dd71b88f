"""Scoring methods on test volumes: PSNR/SSIM per volume (whole and foreground), FID per
method, summaries over volumes, paired tests, and comparison figures.

Protocol (the paper's, on whole volumes): each test volume is cropped so its in-plane size
divides the scale, degraded slice by slice with antialiased bicubic downsampling
(:func:`fagan.evaluation.simulate.simulate_low_resolution`), and every method upsamples the
same LR volume. Scores use the HR volume's min-max range as ``data_range`` (PSNR of the
min-max normalised volumes with range 1), which is also what ``check_upscale`` reports.
Bicubic is always evaluated beside the models.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fagan import FaganError
from fagan.atomic import atomic_path
from fagan.data.io import ALL_FRAMES, Volume, each_volume, read_volume, volume_stem
from fagan.evaluation.simulate import (
    bicubic_volume,
    foreground_mask,
    score_volume,
    simulate_low_resolution,
    slices_along,
)
from fagan.evaluation.tables import Table
from fagan.metrics.stats import paired_test, summarise

log = logging.getLogger(__name__)

BICUBIC = "bicubic"


@dataclass(frozen=True)
class Method:
    """A way to upscale: a trained generator for one scale, or bicubic (``generator=None``)."""

    name: str
    scale: int
    generator: nn.Module | None = None


@dataclass(frozen=True)
class EvalVolume:
    """A test volume; ``subject`` is the person it belongs to (None: a person of its own)."""

    name: str
    anatomy: str
    path: Path
    subject: str | None = None


@dataclass(frozen=True)
class Row:
    """The scores of one method on one volume at one scale."""

    method: str
    scale: int
    volume: str
    anatomy: str
    psnr: float
    ssim: float
    psnr_fg: float
    ssim_fg: float
    seconds: float
    subject: str = ""  # the person the volume belongs to ("": a person of its own)

    @property
    def person(self) -> str:
        return self.subject or self.volume


ROW_FIELDS = (
    "method", "scale", "volume", "anatomy", "psnr", "ssim", "psnr_fg", "ssim_fg", "seconds", "subject"
)  # fmt: skip


@dataclass
class Evaluation:
    """Everything one evaluation measured."""

    rows: list[Row] = field(default_factory=list)
    fid: dict[tuple[str, int], float] = field(default_factory=dict)  # (method, scale) -> FID
    figures: list[Path] = field(default_factory=list)

    def methods(self, scale: int | None = None) -> list[str]:
        """Method names in the order they were evaluated (bicubic first)."""
        seen: dict[str, None] = {}
        for r in self.rows:
            if scale is None or r.scale == scale:
                seen.setdefault(r.method)
        return list(seen)

    def scales(self) -> list[int]:
        return sorted({r.scale for r in self.rows})

    def anatomies(self) -> list[str]:
        return list(dict.fromkeys(r.anatomy for r in self.rows))

    def values(self, method: str, scale: int, metric: str, anatomy: str | None = None) -> list[float]:
        """Per-volume values of ``metric``, in volume order."""
        return [getattr(r, metric) for r in self._rows(method, scale, anatomy)]

    def _rows(self, method: str, scale: int, anatomy: str | None) -> list[Row]:
        return [
            r
            for r in self.rows
            if r.method == method and r.scale == scale and (anatomy is None or r.anatomy == anatomy)
        ]

    def repeated_subjects(self, anatomy: str | None = None) -> bool:
        """Whether some subject has several volumes among those of ``anatomy`` (None: all)."""
        volumes = {(r.person, r.volume) for r in self.rows if anatomy is None or r.anatomy == anatomy}
        return len({person for person, _ in volumes}) < len(volumes)

    def samples(self, method: str, scale: int, metric: str, anatomy: str | None = None) -> list[float]:
        """The independent samples of ``metric`` that tables summarise and tests pair: per-volume
        values, or, when a subject has several volumes (:meth:`repeated_subjects`), each subject's
        mean over its volumes with a finite value (a subject with none gives NaN), in the order
        subjects first appear. Volumes of one person are not independent samples."""
        rows = self._rows(method, scale, anatomy)
        if not self.repeated_subjects(anatomy):
            return [getattr(r, metric) for r in rows]
        by_person: dict[str, list[float]] = {}
        for r in rows:
            by_person.setdefault(r.person, []).append(getattr(r, metric))
        means = []
        for values in by_person.values():
            finite = [v for v in values if math.isfinite(v)]
            means.append(sum(finite) / len(finite) if finite else math.nan)
        return means


def evaluate(
    volumes: Sequence[EvalVolume],
    methods: Sequence[Method],
    *,
    axis: int = 2,
    device: str | torch.device = "cpu",
    fid_network: nn.Module | None = None,
    figures_dir: str | os.PathLike | None = None,
    figure_volumes: Sequence[str] | None = None,
    figure_methods: Sequence[str] | None = None,
    progress: Callable[[str], None] = log.info,
    self_ensemble: bool = False,
    consistency: bool = True,
) -> Evaluation:
    """Score every method (plus bicubic) on every volume at each method's scale.

    ``self_ensemble`` runs every network with the geometric self-ensemble
    (:func:`fagan.inference.upscale_batch`); ``consistency=False`` skips the data-consistency
    projection (:mod:`fagan.inference.consistency`; the simulated LR is bicubic, so it applies to
    every network).

    A 4D file (a cine or diffusion series) is one volume of the tables: its volumes are each
    degraded and upscaled on their own, as ``fagan upscale`` does, and scored together (PSNR over
    all their voxels, SSIM over all their slices; constant volumes are left out).

    With ``figures_dir``, the volumes named in ``figure_volumes`` (default: per anatomy, the
    one with the largest slices) get a comparison figure per scale: HR, bicubic and each method
    of ``figure_methods`` (default: all) on the middle slice (of a 4D file's middle volume), with a
    zoomed region and error maps.
    """
    from fagan.evaluation.figures import comparison_figure
    from fagan.inference.geometry import coarse_in_plane_axis, voxel_sizes
    from fagan.inference.upscale import UnfittableVolume, upscale_volume
    from fagan.metrics.fid import fid_from_features, inception_features

    result = Evaluation()
    by_scale: dict[int, list[Method]] = defaultdict(list)
    for m in methods:
        if m.name == BICUBIC:
            raise ValueError(f"'{BICUBIC}' is evaluated anyway; name the models something else")
        by_scale[m.scale].append(m)
    if len({(m.name, m.scale) for m in methods}) != len(methods):
        raise ValueError("two methods share a name at the same scale")
    if figures_dir is None:
        figure_volumes = ()
    elif figure_volumes is None:
        figure_volumes = largest_per_anatomy([(v.name, v.anatomy, _shape(v.path)) for v in volumes], axis)
    shown = None if figure_methods is None else {BICUBIC, *figure_methods}
    scales = sorted(by_scale)
    for info in volumes:  # before any work: a volume too small for a scale is named with it
        _check_size(info.path, scales, axis)
    features: dict[tuple[str, int], list[np.ndarray]] = defaultdict(list)  # (method or HR, scale)
    for info in volumes:  # one volume in memory at a time, read once for every scale
        parts = each_volume(read_volume(info.path, frame=ALL_FRAMES))
        coarse = coarse_in_plane_axis(parts[0].affine, parts[0].array.shape[:3], axis)
        if coarse is not None:  # as fagan upscale warns: the scored planes hold the thick voxels
            sizes = voxel_sizes(parts[0].affine)
            progress(
                f"warning: {info.name} has {sizes[coarse]:.3g} mm voxels along axis {coarse}, in the "
                f"planes being scored, against {sizes[axis]:.3g} mm along axis {axis}; if its acquired "
                f"planes are the thin ones, evaluate with --axis {coarse}"
            )
        # a 4D file's volumes one after another along the slice axis: every slice-wise step and
        # score is then the same as on each volume
        volume = Volume(np.concatenate([v.array for v in parts], axis=axis), parts[0].affine, parts[0].meta)
        depth = parts[0].array.shape[axis]
        middle = len(parts) // 2 * depth + depth // 2  # the middle slice (of the middle volume)
        for scale in scales:
            pair = simulate_low_resolution(volume, scale, axis)
            hr = pair.hr.array
            mask = np.concatenate([foreground_mask(h, axis) for h in np.split(hr, len(parts), axis)], axis)
            data_range = (float(hr.min()), float(hr.max()))
            panels: dict[str, np.ndarray] = {}
            if fid_network is not None:
                features[("HR", scale)].append(
                    inception_features(fid_network, [(slices_along(hr, axis), data_range)])
                )
            for method in [Method(BICUBIC, scale), *by_scale[scale]]:
                start = time.perf_counter()
                if method.generator is None:
                    sr = bicubic_volume(pair.lr, scale, axis)
                else:
                    lr = pair.lr
                    if len(parts) > 1:  # as 4D again, so that each volume is normalised on its own
                        lr = Volume(np.stack(np.split(lr.array, len(parts), axis), -1), lr.affine, lr.meta)
                    try:
                        sr = upscale_volume(
                            lr,
                            method.generator,
                            axis=axis,
                            device=device,
                            self_ensemble=self_ensemble,
                            consistency=consistency,
                        ).array
                    except UnfittableVolume as exc:
                        raise FaganError(
                            f"{info.path}: after downsampling x{scale}, {exc}; leave that volume out "
                            "of the file, or the file out of the test set"
                        ) from None
                    if len(parts) > 1:
                        sr = np.concatenate([sr[..., t] for t in range(len(parts))], axis=axis)
                seconds = time.perf_counter() - start
                s = score_volume(sr, hr, axis, mask=mask)
                result.rows.append(
                    Row(method.name, scale, info.name, info.anatomy, *s, seconds, info.subject or info.name)
                )
                progress(
                    f"x{scale} {info.name}: {method.name} PSNR {s.psnr:.2f} dB, "
                    f"SSIM {s.ssim:.4f} ({seconds:.1f} s)"
                )
                if fid_network is not None:
                    features[(method.name, scale)].append(
                        inception_features(fid_network, [(slices_along(sr, axis), data_range)])
                    )
                if info.name in figure_volumes and (shown is None or method.name in shown):
                    panels[method.name] = np.take(sr, middle, axis=axis)
            if panels:
                folder = Path(figures_dir)  # type: ignore[arg-type]
                folder.mkdir(parents=True, exist_ok=True)
                hr_slice = np.take(hr, middle, axis=axis)
                scores = {
                    r.method: r.psnr
                    for r in result.rows
                    if r.scale == scale and r.volume == info.name and r.method in panels
                }
                where = f"slice {depth // 2} along axis {axis}" + (
                    f" of volume {len(parts) // 2}" if len(parts) > 1 else ""
                )
                title = f"{info.name} x{scale}, {where}: " + ", ".join(
                    f"{k} {v:.2f} dB" for k, v in scores.items()
                )
                path = folder / figure_name(info.name, scale)
                try:  # a figure is an extra: failing to draw one must not lose the scores
                    across, down = (float(n) for i, n in enumerate(voxel_sizes(parts[0].affine)) if i != axis)
                    figure = comparison_figure(hr_slice, panels, title, path, (across, down))
                    result.figures.append(figure)
                except (OSError, ValueError) as exc:
                    log.warning("could not write the figure %s: %s", path, exc)
                    progress(f"x{scale} {info.name}: figure not written ({' '.join(str(exc).split())})")
    if fid_network is not None:
        for scale in scales:
            real = np.concatenate(features[("HR", scale)])
            for name in [BICUBIC, *(m.name for m in by_scale[scale])]:
                result.fid[(name, scale)] = fid_from_features(real, np.concatenate(features[(name, scale)]))
    return result


def figure_name(volume: str, scale: int) -> str:
    """The file name of a volume's comparison figure: volume names such as ``p1/t1`` (same file
    names in different folders) become ``p1_t1_x4.png``, one file in the figures folder."""
    safe = volume.replace("/", "_").replace("\\", "_")
    return f"{safe}_x{scale}.png"


def method_names(files: Sequence[Path], models: Sequence[str], scales: Sequence[int]) -> list[str]:
    """Unique names at each scale for the weights ``files`` (of generators ``models`` at
    ``scales``): the model name where it is unique at its scale, else the file's stem, else as
    many of its folders as tell it apart (``a/release``, ``runs/a/release``).

    The same file given twice is a FaganError.
    """
    paths = [Path(os.path.abspath(f)) for f in files]
    depth = [0] * len(paths)

    def parts(i: int) -> list[str]:
        return [*paths[i].parent.parts[1:], paths[i].stem]

    def label(i: int) -> str:
        if depth[i] == 0:
            return models[i]
        if depth[i] > len(parts(i)):
            return str(paths[i])
        return "/".join(parts(i)[-depth[i] :])

    while True:
        keys = [(label(i), scales[i]) for i in range(len(paths))]
        clash = [i for i, key in enumerate(keys) if keys.count(key) > 1]
        if not clash:
            return [key[0] for key in keys]
        for i in clash:
            if depth[i] > len(parts(i)):
                raise FaganError(f"--weights names {files[i]} twice; give each weights file once")
            depth[i] += 1


def _check_size(path: Path, scales: Sequence[int], axis: int) -> None:
    """Refuse, naming ``path`` and the scale, a volume whose slices along ``axis``, cropped to a
    multiple of the scale, are smaller than SSIM's window (or than one LR pixel)."""
    from fagan.data.io import claimed_shape
    from fagan.metrics.image import SSIM_WINDOW

    shape = claimed_shape(path)
    if shape is None:  # headers that do not tell: the scores' own checks stop it later
        return
    plane = [n for i, n in enumerate(shape[:3]) if i != axis]
    for scale in scales:
        if min(n // scale * scale for n in plane) < max(SSIM_WINDOW, scale):
            raise FaganError(
                f"{path}: its {plane[0]}x{plane[1]} slices along axis {axis} are too small to score at "
                f"x{scale} (SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels once cropped to a "
                "multiple of the scale); leave it out of the test set, or evaluate other scales"
            )


def _shape(path: Path) -> tuple[int, ...]:
    """A volume's shape from its headers, or by reading it when they cannot tell."""
    from fagan.data.io import claimed_shape

    return claimed_shape(path) or read_volume(path, frame=ALL_FRAMES).array.shape[:3]


def largest_per_anatomy(volumes: Sequence[tuple[str, str, tuple[int, ...]]], axis: int = 2) -> list[str]:
    """Per anatomy, the name of the volume with the most pixels per slice: the most to look at.
    ``volumes``: (name, anatomy, shape) triples."""
    best: dict[str, tuple[int, str]] = {}
    for name, anatomy, shape in volumes:
        pixels = math.prod(n for i, n in enumerate(shape) if i != axis)
        if pixels > best.get(anatomy, (-1, ""))[0]:
            best[anatomy] = (pixels, name)
    return [name for _, name in best.values()]


# ---------------------------------------------------------------------------------------------
# Tables


def _with_all(anatomies: list[str]) -> list[str | None]:
    """Per-anatomy groups, then all volumes (None) when there is more than one anatomy."""
    return [*anatomies, None] if len(anatomies) > 1 else [None]


def psnr_ssim_tables(ev: Evaluation, number_from: int = 1, foreground: bool = False) -> list[Table]:
    """The analogue of the paper's Tables 1-4: one table per anatomy (and one over all volumes),
    a row per method, PSNR and SSIM per scale as mean ± std over volumes (over subjects, each the
    mean of its volumes, where a subject has several: :meth:`Evaluation.samples`)."""
    tables = []
    suffix, what = ("_fg", " inside the foreground mask") if foreground else ("", "")
    for k, anatomy in enumerate(_with_all(ev.anatomies())):
        group = anatomy or "all volumes"
        columns = ["method"]
        for scale in ev.scales():
            columns += [f"x{scale} PSNR (dB)", f"x{scale} SSIM"]
        rows = []
        unscored: dict[str, None] = {}  # volumes with no finite score in some cell
        for method in ev.methods():
            row: list = [method]
            for scale in ev.scales():
                for metric in ("psnr", "ssim"):
                    values = ev.samples(method, scale, metric + suffix, anatomy)
                    ok = [v for v in values if math.isfinite(v)]
                    row.append(summarise(ok) if ok else "")
                    for r in ev.rows:
                        if (r.method, r.scale) == (method, scale) and anatomy in (None, r.anatomy):
                            if not math.isfinite(getattr(r, metric + suffix)):
                                unscored.setdefault(f"{r.volume} (x{scale} {metric.upper()})")
            rows.append(tuple(row))
        # e.g. a foreground mask with nothing outside SSIM's border: the cell's mean is of the rest
        missing = f"; without a finite score, left out: {', '.join(unscored)}" if unscored else ""
        group_key = (anatomy or "all").replace(" ", "_")
        name = f"foreground_{group_key}" if foreground else f"table{number_from + k}_{group_key}"
        tables.append(
            Table(
                name,
                f"PSNR / SSIM{what}, {group} ({_counted(ev, anatomy)}{missing})",
                tuple(columns),
                tuple(rows),
            )
        )
    return tables


def _counted(ev: Evaluation, anatomy: str | None) -> str:
    """What a table's cells summarise: ``5 volumes; mean ± std over volumes``, or over subjects
    when a subject has several volumes."""
    rows = [r for r in ev.rows if anatomy is None or r.anatomy == anatomy]
    n = len({r.volume for r in rows})
    volumes = f"{n} volume{'s' * (n != 1)}"
    if not ev.repeated_subjects(anatomy):
        return f"{volumes}; mean ± std over volumes"
    m = len({r.person for r in rows})
    return f"{volumes} of {m} subject{'s' * (m != 1)}; mean ± std over subjects, each the mean of its volumes"


def fid_table(ev: Evaluation, name: str = "table5_fid") -> Table:
    """The analogue of Table 5: FID per method and scale (lower is better)."""
    scales = sorted({s for _, s in ev.fid})
    methods = list(dict.fromkeys(m for m, _ in ev.fid))
    rows = tuple((m, *(ev.fid.get((m, s), math.nan) for s in scales)) for m in methods)
    slices = "over every slice of the test volumes"
    return Table(
        name,
        f"FID against the HR slices, {slices} (lower is better)",
        ("method", *(f"x{s} FID" for s in scales)),
        rows,
        "FID is biased upwards on small sets; compare methods only within a column.",
    )


def paired_tests_table(ev: Evaluation, reference: str, name: str = "paired_tests") -> Table:
    """Wilcoxon signed-rank test of ``reference`` against every other method, per scale, over
    all volumes (over subjects, each the mean of its volumes, when a subject has several):
    median paired difference in PSNR and SSIM and the two-sided p-value."""
    unit = "subjects" if ev.repeated_subjects() else "volumes"
    rows = []
    for scale in ev.scales():
        methods = ev.methods(scale)
        if reference not in methods:
            continue
        for other in methods:
            if other == reference:
                continue
            p = paired_test(
                *_finite_pairs(ev.samples(reference, scale, "psnr"), ev.samples(other, scale, "psnr"))
            )
            q = paired_test(
                *_finite_pairs(ev.samples(reference, scale, "ssim"), ev.samples(other, scale, "ssim"))
            )
            rows.append(
                (f"x{scale}", other, p.median_difference, p.p_value, q.median_difference, q.p_value, p.n)
            )
    return Table(
        name,
        f"{reference} against each method: Wilcoxon signed-rank test over {unit}",
        ("scale", "against", "median ΔPSNR (dB)", "p (PSNR)", "median ΔSSIM", "p (SSIM)", unit),
        tuple(rows),
        f"Two-sided; with n {unit} the smallest possible p is 2/2^n (0.0625 for 5).",
    )


def _finite_pairs(a: list[float], b: list[float]) -> tuple[list[float], list[float]]:
    """The pairs of ``a`` and ``b`` where both are finite (a volume without a foreground score,
    say, leaves the test rather than making it NaN)."""
    kept = [(x, y) for x, y in zip(a, b, strict=True) if math.isfinite(x) and math.isfinite(y)]
    return [x for x, _ in kept], [y for _, y in kept]


def write_rows(rows: Sequence[Row], path: str | os.PathLike) -> None:
    """The per-volume CSV: one line per method, scale and volume."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(ROW_FIELDS)
        for r in rows:
            writer.writerow(
                [r.method, r.scale, r.volume, r.anatomy]
                + [f"{getattr(r, k):.6f}" for k in ("psnr", "ssim", "psnr_fg", "ssim_fg")]
                + [f"{r.seconds:.3f}", r.subject]
            )


def read_rows(path: str | os.PathLike) -> list[Row]:
    with open(path, newline="", encoding="utf-8") as f:
        return [
            Row(
                d["method"],
                int(d["scale"]),
                d["volume"],
                d["anatomy"],
                *(float(d[k]) for k in ("psnr", "ssim", "psnr_fg", "ssim_fg", "seconds")),
                d.get("subject") or "",  # files written before subjects were recorded
            )
            for d in csv.DictReader(f)
        ]


def evaluation_volumes(
    data: str | os.PathLike | None = None, split: str = "test", subject: str | None = None
) -> list[EvalVolume]:
    """The volumes of ``split``: from a manifest (or a folder), or the embedded sample data. Each
    volume's subject comes from the manifest, or for a folder from ``subject`` (a regular
    expression, as ``fagan prepare --subject`` takes) or prepare's rule."""
    from fagan.data.manifest import Manifest, resolve_entries, subject_of, subject_pattern
    from fagan.data.sample import sample_volumes

    if data is None:
        return [EvalVolume(v.name, v.anatomy, v.path) for v in sample_volumes(split)]
    entries = resolve_entries(data, split)
    paths = [path for path, _ in entries]
    if not paths:
        raise ValueError(f"{data} has no volumes in its {split} split")
    if Path(data).is_dir():  # prepare's subject rule
        pattern = subject_pattern(subject) if subject is not None else None
        subjects: list[str | None] = [subject_of(p, data, pattern) for p in paths]
        unmatched = [str(p) for p, name in zip(paths, subjects, strict=True) if name is None]
        if unmatched:
            raise FaganError(
                f"--subject {subject!r} names no subject in {len(unmatched)} of {len(paths)} volume paths "
                f"(such as {unmatched[0]}); it is searched in each path relative to {data}"
            )
    elif Path(data).suffix.lower() == ".json":
        subjects = [e.subject for e in Manifest.load(data).entries if e.split == split]
    else:
        subjects = [None]
    return [
        EvalVolume(n, a or "MRI", p, subject)
        for n, (p, a), subject in zip(volume_names(paths), entries, subjects, strict=True)
    ]


def volume_names(paths: Sequence[Path]) -> list[str]:
    """A unique name for each volume: its file name without suffix, with as many of its folders
    as tell apart the volumes of that file name (``p01/visit1/anat/T1.nii.gz`` and
    ``p01/visit2/anat/T1.nii.gz`` are ``visit1/anat/T1`` and ``visit2/anat/T1``), else its whole
    path."""
    parts = [[*Path(os.path.abspath(p)).parent.parts[1:], volume_stem(Path(p).name)] for p in paths]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, part in enumerate(parts):
        groups[part[-1]].append(i)
    names = [part[-1] for part in parts]
    for members in groups.values():
        for depth in range(2, max(len(parts[i]) for i in members) + 1):
            if len(members) == 1:
                break
            tried = ["/".join(parts[i][-depth:]) for i in members]
            if len(set(tried)) == len(tried):
                for i, name in zip(members, tried, strict=True):
                    names[i] = name
                break
        else:
            if len(members) > 1:
                for i in members:
                    names[i] = str(paths[i])
    return names


__all__ = [
    "BICUBIC",
    "Evaluation",
    "Method",
    "Row",
    "EvalVolume",
    "evaluate",
    "fid_table",
    "largest_per_anatomy",
    "paired_tests_table",
    "psnr_ssim_tables",
    "read_rows",
    "evaluation_volumes",
    "figure_name",
    "method_names",
    "volume_names",
    "write_rows",
]
