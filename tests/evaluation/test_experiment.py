"""The whole protocol end to end with tiny networks: runs, tables, figures, report, reuse."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from fagan import FaganError
from fagan.data.manifest import Manifest, ManifestEntry
from fagan.evaluation.experiment import ALPHA_BETA, Run, Settings, plan, run_experiment, train_config
from fagan.models.registry import ABLATIONS, BASELINES

from .phantoms import phantom_manifest

TINY = {
    "channels": 8,
    "lffb_blocks": 1,
    "path_channels": 4,
    "residual_blocks": 1,
    "head_kernel": 3,
    "reduction": 4,
}


def test_plan_trains_each_configuration_once() -> None:
    runs = plan((2, 4, 8), 4)
    keys = [r.key for r in runs]
    assert len(keys) == len(set(keys))
    assert {Run(n, s) for n in BASELINES for s in (2, 4, 8)} <= set(runs)
    assert {Run(n, 4) for n in ABLATIONS} <= set(runs)
    assert Run("fagan-direct", 4) in runs
    # (0.5, 0.5) is FA-GAN itself; the two other settings are runs of their own
    assert sum(1 for r in runs if r.options) == len(ALPHA_BETA) - 1
    assert len(runs) == 12 + 4 + 1 + 2


def test_configs_share_everything_but_the_generator() -> None:
    settings = Settings(steps=300, batch_size=4)
    a, b = (
        train_config(Run("srgan", 4), settings),
        train_config(Run("fagan", 4, (("alpha", 0.25),)), settings),
    )
    assert (a.data, a.optim, a.schedule, a.loss, a.seed) == (b.data, b.optim, b.schedule, b.loss, b.seed)
    assert a.optim.lr == 1e-4 and a.optim.betas[0] == 0.9  # the paper's Adam
    assert a.loss.adversarial_weight == 0 and a.schedule.ema_decay == 0
    gan = train_config(Run("fagan", 4), Settings(steps=300, recipe="gan"))
    assert gan.loss.adversarial_weight > 0 and gan.schedule.warmup_steps == 150
    with pytest.raises(ValueError, match="unknown generator option"):
        train_config(Run("fagan", 4, (("gamma", 1.0),)), settings)


class _TinyFeatures(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_experiment_writes_every_table_and_reuses_finished_runs(tmp_path) -> None:
    manifest = phantom_manifest(tmp_path / "data")
    fid_net = tmp_path / "fid.pt"
    torch.jit.script(_TinyFeatures()).save(str(fid_net))
    settings = Settings(
        steps=2, batch_size=2, data=str(manifest), model_options=TINY, patch_sizes={2: 16, 4: 16, 8: 16}
    )
    out = tmp_path / "exp"
    messages: list[str] = []
    result = run_experiment(
        out,
        settings,
        scales=(4,),
        ablation_scale=4,
        device="cpu",
        fid_weights=fid_net,
        log_fn=messages.append,
    )
    names = [t.name for t in result.tables]
    # one table for the single anatomy, FID, ablation, fusion, alpha/beta, paired tests, foreground
    assert names == [
        "table1_all",
        "table5_fid",
        "table6_ablation",
        "table7_fusion",
        "table8_alpha_beta",
        "paired_tests",
        "foreground_all",
    ]
    tables = {t.name: t for t in result.tables}
    assert [r[0] for r in tables["table1_all"].rows] == ["bicubic", *BASELINES]
    assert [r[0] for r in tables["table6_ablation"].rows] == list(ABLATIONS)
    assert len(tables["table7_fusion"].rows) == 2 and len(tables["table8_alpha_beta"].rows) == 3
    assert [r[1] for r in tables["paired_tests"].rows] == ["bicubic", "srgan", "ca-srgan", "sa-srgan"]
    for name in names:
        assert (out / f"{name}.csv").is_file()
    markdown = (out / "tables.md").read_text()
    assert "| fagan |" in markdown and "Ablation" in markdown
    with open(out / "per_volume.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == (1 + len(plan((4,), 4))) * 2  # bicubic and every run, on both test volumes
    report = (out / "report.html").read_text()
    assert all(t.title.split(",")[0] in report for t in result.tables)
    assert report.count("<img") == len(result.figures) >= 2  # a comparison figure and the loss curves
    assert (out / "figures" / "loss_curves_x4.png").is_file()

    # A second call reuses every finished run and gives the same scores.
    again: list[str] = []
    second = run_experiment(
        out, settings, scales=(4,), ablation_scale=4, device="cpu", fid_weights=fid_net, log_fn=again.append
    )
    assert sum("reusing" in m for m in again) == len(plan((4,), 4))
    assert [r.psnr for r in second.evaluation.rows] == [r.psnr for r in result.evaluation.rows]
    # Without FID the next call's folder holds no FID table of the last one; a user's file stays.
    (out / "my_notes.csv").write_text("kept")
    run_experiment(out, settings, scales=(4,), ablation_scale=4, device="cpu", fid=False, log_fn=again.append)
    assert not (out / "table5_fid.csv").exists() and "FID" not in (out / "tables.md").read_text()
    assert (out / "my_notes.csv").read_text() == "kept" and (out / "paired_tests.csv").is_file()
    # ... but refuses to mix runs trained another way into the same folder.
    with pytest.raises(ValueError, match="another configuration"):
        run_experiment(out, Settings(**{**settings.__dict__, "steps": 3}), scales=(4,), fid=False)


def test_the_adversarial_recipe_adds_the_spectral_norm_comparison(tmp_path) -> None:
    """Fig. 10: FA-GAN against a discriminator without spectral normalisation, trained for real."""
    from fagan.evaluation.evaluate import Evaluation, Row
    from fagan.evaluation.experiment import loss_curves, no_spectral_norm_run, spectral_norm_table, train_run

    assert no_spectral_norm_run(4) not in plan((4,), 4)
    runs = plan((4,), 4, gan=True)
    plain = no_spectral_norm_run(4)
    assert plain in runs and plain.key == "fagan-d_spectral_normFalse_x4" and Run("fagan", 4) in runs
    settings = Settings(
        steps=2,
        batch_size=2,
        recipe="gan",
        data=str(phantom_manifest(tmp_path / "data")),
        model_options=TINY,
        patch_sizes={2: 16, 4: 16, 8: 16},
    )
    config = train_config(plain, settings)
    assert config.model.discriminator == {"spectral_norm": False} and config.loss.adversarial_weight > 0
    release = train_run(plain, settings, tmp_path / "runs", "cpu", log_fn=lambda m: None)
    assert release.is_file()
    figure = loss_curves({"no SN": release.parent}, tmp_path / "d.png", "D", term="d_total")
    assert figure.stat().st_size > 1000

    def rows(method: str, psnr: float) -> list[Row]:
        return [Row(method, 4, f"v{i}", "MRI", psnr + i, 0.9, psnr, 0.9, 0.0) for i in range(3)]

    ev = Evaluation(rows("bicubic", 25.0) + rows("fagan", 26.0) + rows(plain.label, 25.5))
    table = spectral_norm_table(ev, 4)
    assert [r[0] for r in table.rows] == ["with (the paper's)", "without"]
    assert table.rows[0][-1] == pytest.approx(1.0) and table.rows[1][-1] == pytest.approx(0.5)


def test_train_run_resumes_an_interrupted_run_and_reuses_a_finished_one(tmp_path) -> None:
    from fagan.evaluation.experiment import train_run

    settings = Settings(
        steps=2,
        batch_size=2,
        data=str(phantom_manifest(tmp_path / "data")),
        model_options=TINY,
        patch_sizes={4: 16},
    )
    run, runs = Run("fagan", 4), tmp_path / "runs"
    (runs / run.key).mkdir(parents=True)
    (runs / run.key / "train.log").write_text("")  # killed while starting: not yet a run
    messages: list[str] = []
    release = train_run(run, settings, runs, device="cpu", log_fn=messages.append)
    release.unlink()  # as if stopped after its last checkpoint, before the release was written
    assert train_run(run, settings, runs, device="cpu", log_fn=messages.append) == release
    assert train_run(run, settings, runs, device="cpu", log_fn=messages.append) == release
    assert [m.split(": ")[1] for m in messages] == [
        "training 2 steps",
        "resuming",
        "reusing the finished run",
    ]
    # The manifest made again with another split: the finished run trained on a subject that is
    # now a test subject, so it must not be reused.
    manifest = Manifest.load(Path(settings.data))
    moved = [
        ManifestEntry(e.path, e.subject, {"subject0": "test", "subject3": "train"}.get(e.subject, e.split))
        for e in manifest.entries
    ]
    Manifest(moved).save(Path(settings.data), overwrite=True)
    with pytest.raises(FaganError, match="trained on other data .*; give a new --out or remove that run"):
        train_run(run, settings, runs, device="cpu", log_fn=messages.append)
