"""The paper's experimental protocol as one function: train every method, score them, write
Tables 1-8, the figures and a report.

What is trained (each a configuration of the one generator class, see
:mod:`fagan.models.registry`):

* Tables 1-5: SRGAN, CA-SR-GAN, SA-SR-GAN and FA-GAN at every scale (bicubic beside them);
* Table 6: the eight LFFB / CA / SA combinations at the ablation scale (x4 by default; the four
  above are reused);
* Table 7: FA-GAN's weighted connection against the direct one;
* Table 8: FA-GAN with (alpha, beta) = (0.25, 0.75), (0.5, 0.5), (0.75, 0.25);
* with the adversarial recipe, Fig. 10: FA-GAN with and without spectral normalisation in
  the discriminator (losses during training, and a table of the scores).

Every run uses the same data, patch size, batch, steps, seed and optimiser (Adam, lr 1e-4,
beta1 0.9, as the paper); only the generator differs. The default recipe is PSNR-oriented
(pixel loss only): the paper's VGG19 perceptual term needs ImageNet weights that cannot ship
with fagan, and a short adversarial run measures the discriminator's noise more than the
generator. ``recipe="gan"`` adds the adversarial term after a pixel-loss warm-up (and the
perceptual term when VGG weights are given).

Runs live in ``OUT/runs/<key>``; a finished run (its release file present, same
configuration) is reused and an interrupted one resumed, so the command can be re-run after a
crash or with more methods without repeating work.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fagan.atomic import atomic_path
from fagan.evaluation.evaluate import (
    BICUBIC,
    Evaluation,
    Method,
    evaluate,
    evaluation_volumes,
    fid_table,
    paired_tests_table,
    psnr_ssim_tables,
    write_rows,
)
from fagan.evaluation.tables import Table, write_tables
from fagan.metrics.stats import summarise
from fagan.models.registry import ABLATIONS, BASELINES, generator_config

log = logging.getLogger(__name__)

REFERENCE = "fagan"
ALPHA_BETA: tuple[tuple[float, float], ...] = ((0.25, 0.75), (0.5, 0.5), (0.75, 0.25))
PATCH_SIZES = {2: 64, 4: 64, 8: 96}  # HR patches: LR sides of 32, 16 and 12 pixels


@dataclass(frozen=True)
class Run:
    """One training run: the generator ``name`` at ``scale`` with generator ``options`` (and
    discriminator options, for the spectral-normalisation comparison)."""

    name: str
    scale: int
    options: tuple[tuple[str, float], ...] = ()
    discriminator: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        """The method's name in the tables."""
        label = self.name + "".join(f" {k}={v:g}" for k, v in self.options)
        return label + "".join(f" (D {k}={v})" for k, v in self.discriminator)

    @property
    def key(self) -> str:
        """The run's folder name."""
        extra = "".join(f"-{k}{v:g}" for k, v in self.options)
        extra += "".join(f"-d_{k}{v}" for k, v in self.discriminator)
        return f"{self.name}{extra}_x{self.scale}"


def alpha_beta_run(alpha: float, beta: float, scale: int) -> Run:
    if (alpha, beta) == (0.5, 0.5):  # the default configuration: the same run as FA-GAN's
        return Run(REFERENCE, scale)
    return Run(REFERENCE, scale, (("alpha", alpha), ("beta", beta)))


def no_spectral_norm_run(scale: int) -> Run:
    return Run(REFERENCE, scale, discriminator=(("spectral_norm", False),))


def plan(scales: Sequence[int] = (2, 4, 8), ablation_scale: int = 4, gan: bool = False) -> list[Run]:
    """Every run the protocol needs, each once, in the order they are trained (with ``gan``,
    also FA-GAN against a discriminator without spectral normalisation)."""
    runs = [Run(name, s) for s in scales for name in BASELINES]
    runs += [Run(name, ablation_scale) for name in ABLATIONS]
    runs.append(Run("fagan-direct", ablation_scale))
    runs += [alpha_beta_run(a, b, ablation_scale) for a, b in ALPHA_BETA]
    if gan:
        runs.append(no_spectral_norm_run(ablation_scale))
    return list(dict.fromkeys(runs))


@dataclass(frozen=True)
class Settings:
    """What every run shares."""

    steps: int = 150
    batch_size: int = 4
    lr: float = 1e-4  # the paper's, for both networks
    recipe: str = "psnr"  # or "gan"
    data: str | None = None  # manifest; None: the embedded sample data
    seed: int = 0
    vgg_weights: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)  # generator options for every run
    patch_sizes: dict[int, int] = field(default_factory=lambda: dict(PATCH_SIZES))


def train_config(run: Run, settings: Settings) -> Any:
    """The :class:`fagan.training.config.TrainConfig` of ``run``."""
    from fagan.training.config import (
        DataConfig,
        LossConfig,
        ModelConfig,
        OptimConfig,
        ScheduleConfig,
        TrainConfig,
    )

    options = {**settings.model_options, **dict(run.options)}
    generator_config(run.name, **options)  # unknown names and options fail here
    steps = settings.steps
    gan = settings.recipe == "gan"
    loss = LossConfig(
        perceptual_weight=1.0 if gan and settings.vgg_weights else 0.0,
        adversarial_weight=1e-3 if gan else 0.0,
    )
    return TrainConfig(
        model=ModelConfig(
            name=run.name, scale=run.scale, overrides=options, discriminator=dict(run.discriminator)
        ),
        data=DataConfig(
            manifest=str(Path(settings.data).resolve()) if settings.data else None,
            patch_size=settings.patch_sizes[run.scale],
            batch_size=settings.batch_size,
            val_slices=8,
        ),
        loss=loss,
        optim=OptimConfig(lr=settings.lr, d_lr=settings.lr, betas=(0.9, 0.999)),
        schedule=ScheduleConfig(
            steps=steps,
            warmup_steps=steps // 2 if gan else 0,
            # An EMA with decay 0.999 still holds most of the initial weights after a few
            # hundred steps; short runs are released without one.
            ema_decay=0.999 if steps >= 5000 else 0.0,
            checkpoint_every=max(1, min(steps, 500)),
            validate_every=steps,
            log_every=max(1, steps // 20),
        ),
        seed=settings.seed,
    )


def train_run(
    run: Run,
    settings: Settings,
    runs_dir: Path,
    device: str = "auto",
    log_fn: Callable[[str], None] = log.info,
) -> Path:
    """Train ``run`` into ``runs_dir/<key>`` (or reuse / resume it) and return its release file."""
    from fagan.models.release import RUN_RELEASE
    from fagan.training.config import dump_config, load_config
    from fagan.training.data import check_same_data, data_record, split_volumes
    from fagan.training.trainer import train

    config = train_config(run, settings)
    run_dir = runs_dir / run.key
    saved = run_dir / "config.yaml"
    if saved.is_file():
        advice = "give a new --out or remove that run"
        if dump_config(load_config(saved)) != dump_config(config):
            raise ValueError(f"{run_dir} was trained with another configuration; {advice}")
        check_same_data(run_dir, data_record(*split_volumes(config.data.manifest)), advice)
        if (run_dir / RUN_RELEASE).is_file():
            log_fn(f"{run.key}: reusing the finished run")
            return run_dir / RUN_RELEASE
        log_fn(f"{run.key}: resuming")
        return train(config, run_dir, device=device, vgg_weights=settings.vgg_weights, resume=True)
    log_fn(f"{run.key}: training {settings.steps} steps")
    return train(config, run_dir, device=device, vgg_weights=settings.vgg_weights)


# ---------------------------------------------------------------------------------------------
# Tables 6-8 and the loss-curve figure


def _mark(on: bool) -> str:
    return "✓" if on else "–"


def _overall(ev: Evaluation, method: str, scale: int) -> tuple[Any, Any, float]:
    psnr, ssim = ev.samples(method, scale, "psnr"), ev.samples(method, scale, "ssim")
    gain = [a - b for a, b in zip(psnr, ev.samples(BICUBIC, scale, "psnr"), strict=True)]
    return summarise(psnr), summarise(ssim), float(sum(gain) / len(gain))


_METRIC_COLUMNS = ("PSNR (dB)", "SSIM", "mean gain over bicubic (dB)")


def ablation_table(ev: Evaluation, scale: int) -> Table:
    rows = []
    for name in ABLATIONS:
        c = generator_config(name)
        rows.append(
            (
                name,
                _mark(c.lffb),
                _mark(c.channel_attention),
                _mark(c.self_attention),
                *_overall(ev, name, scale),
            )
        )
    return Table(
        "table6_ablation",
        f"Ablation of LFFB, channel attention (CA) and self-attention (SA), x{scale}, all volumes",
        ("model", "LFFB", "CA", "SA", *_METRIC_COLUMNS),
        tuple(rows),
        "Without LFFB the trunk is SRGAN's residual blocks; without CA and SA there is no GFFB.",
    )


def fusion_table(ev: Evaluation, scale: int) -> Table:
    rows = [
        ("weighted (softmax over αR, βY)", *_overall(ev, REFERENCE, scale)),
        ("direct (αR + βY)", *_overall(ev, "fagan-direct", scale)),
    ]
    return Table(
        "table7_fusion",
        f"GFFB fusion: weighted against direct connection (α = β = 0.5), x{scale}, all volumes",
        ("connection", *_METRIC_COLUMNS),
        tuple(rows),
    )


def alpha_beta_table(ev: Evaluation, scale: int) -> Table:
    rows = [(a, b, *_overall(ev, alpha_beta_run(a, b, scale).label, scale)) for a, b in ALPHA_BETA]
    return Table(
        "table8_alpha_beta",
        f"FA-GAN (weighted connection) with three (α, β) settings, x{scale}, all volumes",
        ("α", "β", *_METRIC_COLUMNS),
        tuple(rows),
    )


def spectral_norm_table(ev: Evaluation, scale: int) -> Table:
    rows = [
        ("with (the paper's)", *_overall(ev, REFERENCE, scale)),
        ("without", *_overall(ev, no_spectral_norm_run(scale).label, scale)),
    ]
    return Table(
        "table_spectral_norm",
        f"FA-GAN trained against a discriminator with and without spectral normalisation, x{scale}",
        ("spectral normalisation", *_METRIC_COLUMNS),
        tuple(rows),
    )


def loss_curves(
    runs: dict[str, Path], path: Path, title: str, window: int = 20, term: str = "g_total"
) -> Path:
    """A training loss ``term`` of several runs against the step (the generator's for the
    paper's Fig. 11, the discriminator's ``d_total`` for Fig. 10), smoothed with a running mean
    over ``window`` steps; raw values faint behind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from fagan.evaluation.figures import save_png
    from fagan.training.logs import LOSSES, read_jsonl

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, run_dir in runs.items():
        records = [r for r in read_jsonl(run_dir / LOSSES) if not r.get("skipped") and term in r]
        if not records:
            continue
        steps = np.array([r["step"] for r in records])
        values = np.array([r[term] for r in records])
        (line,) = ax.plot(steps, values, linewidth=0.5, alpha=0.25)
        w = min(window, len(values))
        smooth = np.convolve(values, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, color=line.get_color(), linewidth=1.5, label=label)
    ax.set(
        title=title, xlabel="step", ylabel="discriminator loss" if term.startswith("d_") else "generator loss"
    )
    if ax.lines and all(v > 0 for line in ax.lines for v in line.get_ydata()):
        ax.set_yscale("log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# The whole protocol


@dataclass
class ExperimentResult:
    evaluation: Evaluation
    tables: list[Table]
    figures: list[Path]
    report: Path


def run_experiment(
    out: str | os.PathLike,
    settings: Settings = Settings(),
    *,
    scales: Sequence[int] = (2, 4, 8),
    ablation_scale: int = 4,
    device: str = "auto",
    fid_weights: str | os.PathLike | None = None,
    fid: bool = True,
    command: str = "",
    log_fn: Callable[[str], None] = log.info,
) -> ExperimentResult:
    """Train (or reuse) every run of :func:`plan`, evaluate on the test split, and write
    ``per_volume.csv``, ``tables.md`` with one CSV per table, ``figures/`` and ``report.html``
    into ``out``."""
    from fagan.evaluation.report import write_report
    from fagan.inference import pick_device
    from fagan.metrics.fid import load_inception
    from fagan.models.release import load_release
    from fagan.scales import check_scale

    for s in (*scales, ablation_scale):
        check_scale(s)
    if settings.recipe not in ("psnr", "gan"):
        raise ValueError(f"unknown recipe {settings.recipe!r}; choose psnr or gan")
    out = Path(out)
    if settings.data is not None and not str(settings.data).lower().endswith(".json"):
        raise ValueError(
            f"--data {settings.data}: give a manifest JSON from `fagan prepare`, so that training and "
            "test volumes come from different subjects"
        )
    volumes = evaluation_volumes(settings.data)  # fail on bad data before any training
    device_t = pick_device(device)
    fid_network = load_inception(fid_weights, device_t) if fid else None
    gan = settings.recipe == "gan"
    runs = plan(scales, ablation_scale, gan)
    for run in runs:
        train_config(run, settings)  # every configuration is valid before the first step
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "experiment.json") as tmp:
        Path(tmp).write_text(
            json.dumps(
                {
                    "command": command,
                    "settings": {
                        **settings.__dict__,
                        "patch_sizes": {str(k): v for k, v in settings.patch_sizes.items()},
                    },
                    "scales": list(scales),
                    "ablation_scale": ablation_scale,
                    "runs": [r.key for r in runs],
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    releases = {}
    for i, run in enumerate(runs, 1):
        log_fn(f"[{i}/{len(runs)}] {run.key}")
        releases[run] = train_run(run, settings, out / "runs", device, log_fn)

    methods = [
        Method(run.label, run.scale, load_release(path, scale=run.scale, device=device_t)[0])
        for run, path in releases.items()
    ]
    figure_methods = list(BASELINES)
    _clear_outputs(out)
    ev = evaluate(
        volumes,
        methods,
        device=device_t,
        fid_network=fid_network,
        figures_dir=out / "figures",
        figure_methods=figure_methods,
        progress=log_fn,
    )
    main = _restrict(ev, [BICUBIC, *BASELINES])
    tables = psnr_ssim_tables(main)
    if ev.fid:
        tables.append(fid_table(main))
    tables += [ablation_table(ev, ablation_scale), fusion_table(ev, ablation_scale)]
    tables.append(alpha_beta_table(ev, ablation_scale))
    if gan:
        tables.append(spectral_norm_table(ev, ablation_scale))
    tables.append(paired_tests_table(main, REFERENCE))
    tables += psnr_ssim_tables(main, foreground=True)
    write_rows(ev.rows, out / "per_volume.csv")
    write_tables(tables, out)
    curves = [
        loss_curves(
            {name: out / "runs" / Run(name, s).key for name in BASELINES},
            out / "figures" / f"loss_curves_x{s}.png",
            f"Generator loss during training, x{s}",
        )
        for s in scales
    ]
    if gan:
        pair = {
            "fagan (D with SN)": out / "runs" / Run(REFERENCE, ablation_scale).key,
            "fagan (D without SN)": out / "runs" / no_spectral_norm_run(ablation_scale).key,
        }
        curves += [
            loss_curves(pair, out / "figures" / f"sn_{term}_x{ablation_scale}.png", title, term=term)
            for term, title in (
                ("d_total", f"Discriminator loss with and without spectral normalisation, x{ablation_scale}"),
                ("g_total", f"Generator loss with and without spectral normalisation, x{ablation_scale}"),
            )
        ]
    figures = [*ev.figures, *curves]
    report = write_report(
        out / "report.html",
        "FA-GAN: the paper's protocol on this data set",
        command,
        settings,
        tables,
        figures,
    )
    return ExperimentResult(ev, tables, figures, report)


#: What an experiment writes beside its runs; a later one with other settings replaces it all.
OUTPUTS = ("per_volume.csv", "tables.md", "report.html", "table*.csv", "foreground_*.csv", "paired_tests.csv")


def _clear_outputs(out: Path) -> None:
    """Remove an earlier experiment's tables, figures and report from ``out`` (its runs stay), so
    that none of them (an x8 figure, a FID table) outlives the settings it was made with."""
    import shutil

    for pattern in OUTPUTS:
        for path in out.glob(pattern):
            path.unlink()
    shutil.rmtree(out / "figures", ignore_errors=True)


def _restrict(ev: Evaluation, methods: Sequence[str]) -> Evaluation:
    """The part of ``ev`` about ``methods`` (the main comparison, without the ablation runs)."""
    keep = set(methods)
    return Evaluation(
        [r for r in ev.rows if r.method in keep],
        {k: v for k, v in ev.fid.items() if k[0] in keep},
        list(ev.figures),
    )


__all__ = [
    "ALPHA_BETA",
    "ExperimentResult",
    "Run",
    "Settings",
    "ablation_table",
    "alpha_beta_table",
    "fusion_table",
    "loss_curves",
    "no_spectral_norm_run",
    "plan",
    "spectral_norm_table",
    "run_experiment",
    "train_config",
    "train_run",
]
