import csv

import pytest

from fagan import FaganError
from fagan.cli import main
from fagan.data.sample import sample_volumes
from fagan.models import build_generator
from fagan.models.release import save_release

TINY = dict(channels=8, lffb_blocks=1, path_channels=4, residual_blocks=1, head_kernel=3, reduction=4)


@pytest.fixture
def tiny_demo(monkeypatch, tmp_path):
    """The real demo on the two smallest held-out volumes, with tiny untrained weights shipped
    for x2 and x4, except a GAN variant at x2 (so that a scale without weights can be tried)."""
    paths = {
        (s, v): save_release(tmp_path / f"x{s}{v}.safetensors", build_generator("fagan", s, **TINY), "fagan")
        for s in (2, 4)
        for v in ("psnr", "gan")
    }
    del paths[2, "gan"]

    def shipped(scale, variant="psnr"):
        if (scale, variant) not in paths:
            raise FaganError(f"no shipped {variant} weights for x{scale}")
        return paths[scale, variant]

    small = [v for v in sample_volumes("test") if v.name in ("pydicom_MR_small", "nibabel_anatomical")]
    monkeypatch.setattr("fagan.evaluation.demo.shipped_weights", shipped)
    monkeypatch.setattr(
        "fagan.models.release.shipped_scales", lambda variant="psnr": [s for s, v in paths if v == variant]
    )
    monkeypatch.setattr("fagan.evaluation.demo.sample_volumes", lambda split: small)
    return tmp_path / "out"


def test_demo_writes_volumes_figures_csv_and_page(tiny_demo, capsys) -> None:
    assert main(["demo", "--out", str(tiny_demo), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "mean PSNR gain over bicubic" in printed
    names = {p.name for p in tiny_demo.iterdir()}
    for stem in ("pydicom_MR_small", "nibabel_anatomical"):
        for s in (2, 4):
            assert f"{stem}_x{s}_fagan.nii.gz" in names and f"{stem}_x{s}.png" in names
    with open(tiny_demo / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(float(r["psnr_bicubic"]) > 10 for r in rows)
    page = (tiny_demo / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "PSNR / SSIM" in page


def test_demo_of_the_gan_variant_names_its_outputs_and_refuses_a_scale_without_it(tiny_demo, capsys) -> None:
    assert main(["demo", "--out", str(tiny_demo), "--variant", "gan", "--scales", "2", "4"]) == 2
    assert "no shipped gan weights for x2" in capsys.readouterr().err
    assert not tiny_demo.exists(), "nothing is written when a scale has no weights"
    # Without --scales, the GAN demo runs the scales that ship GAN weights (x4).
    assert main(["demo", "--out", str(tiny_demo), "--variant", "gan", "--device", "cpu"]) == 0
    assert "mean PSNR gain over bicubic" in capsys.readouterr().out
    names = {p.name for p in tiny_demo.iterdir()}
    assert {"pydicom_MR_small_x4_fagan-gan.nii.gz", "pydicom_MR_small_x4-gan.png"} <= names
    assert "FA-GAN (gan) vs bicubic" in (tiny_demo / "index.html").read_text()


def test_demo_scale_without_weights_suggests_flags_demo_has(tiny_demo, capsys) -> None:
    assert main(["demo", "--out", str(tiny_demo), "--variant", "gan", "--scales", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no shipped gan weights for x2" in err
    assert "choose --scales among 4" in err and "pass --weights" not in err
    assert not tiny_demo.exists()


def test_demo_self_ensemble_and_consistency_flags_change_the_scores(tiny_demo, tmp_path) -> None:
    runs = {"default": [], "ensemble": ["--self-ensemble"], "raw": ["--no-consistency"]}
    rows = {}
    for name, extra in runs.items():
        folder = tmp_path / name
        assert main(["demo", "--out", str(folder), "--scales", "2", "--device", "cpu", *extra]) == 0
        with open(folder / "results.csv") as f:
            rows[name] = {r["volume"]: r for r in csv.DictReader(f)}
    for volume, row in rows["default"].items():
        assert (
            row["psnr_bicubic"]
            == rows["ensemble"][volume]["psnr_bicubic"]
            == rows["raw"][volume]["psnr_bicubic"]
        )
        assert row["psnr_fagan"] != rows["ensemble"][volume]["psnr_fagan"]
        assert float(row["psnr_fagan"]) > float(rows["raw"][volume]["psnr_fagan"])


def test_the_summary_gives_the_brains_mean_beside_the_mean_over_all() -> None:
    from fagan.evaluation.demo import DemoRow, format_summary

    def row(anatomy: str, scale: int, gain: float) -> DemoRow:
        return DemoRow("v", anatomy, scale, (8, 8, 1), 30.0, 30.0 + gain, 0.9, 0.9, 1.0)

    rows = [row("brain", 2, 1.0), row("brain", 2, 2.0), row("abdomen", 2, 4.5), row("brain", 4, 1.5)]
    lines = format_summary(rows).splitlines()
    assert lines[0] == "x2: mean PSNR gain over bicubic +2.50 dB (min +1.00); brains' mean +1.50 dB"
    assert lines[1] == "x4: mean PSNR gain over bicubic +1.50 dB (min +1.50)"  # brains only: no repeat
