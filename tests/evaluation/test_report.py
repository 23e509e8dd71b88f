"""The HTML report: self-contained, every table and figure in it, and it renders in a browser."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from fagan.evaluation.experiment import Settings
from fagan.evaluation.figures import comparison_figure
from fagan.evaluation.report import write_report
from fagan.evaluation.tables import Table
from fagan.metrics.stats import summarise

from .phantoms import phantom


def _report(tmp_path):
    hr = phantom((48, 48, 1), 0)[..., 0]
    figure = comparison_figure(
        hr, {"bicubic": hr + 20.0, "fagan": hr + 5.0}, "x4 demo", tmp_path / "demo_x4.png"
    )
    tables = [
        Table(
            "table1_all",
            "PSNR / SSIM, all volumes",
            ("method", "x4 PSNR (dB)"),
            (("bicubic", summarise([30.0, 31.0])),),
        ),
        Table("table5_fid", "FID <per method>", ("method", "x4 FID"), (("fagan", 12.5),)),
    ]
    return write_report(
        tmp_path / "report.html", "Demo report", "fagan experiment --out x", Settings(), tables, [figure]
    )


def test_report_is_self_contained_with_every_table_and_figure(tmp_path) -> None:
    text = _report(tmp_path).read_text()
    assert text.count("<table>") == 2 and "FID &lt;per method&gt;" in text
    assert "30.50 ± 0.71" in text and "fagan experiment --out x" in text
    assert text.count('src="data:image/png;base64,') == 1
    assert not re.search(r"(src|href)=[\"']https?://", text)  # nothing to fetch: it opens offline
    assert "<a href='#table5_fid'>" in text


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_report_renders_in_headless_chromium(tmp_path) -> None:
    """Render the report and check the screenshot is a page, not a blank or an error."""
    page = _report(tmp_path)
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1600",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    image = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert image.shape == (1600, 1200)
    dark = image < 128
    assert 0.005 < dark.mean() < 0.5  # text and the figure, on a white page
    assert dark[:, 600:].any()  # the figure spans the page, not just a line of text


def test_a_comparison_figure_states_its_grey_window_and_error_scale(tmp_path, monkeypatch) -> None:
    import fagan.evaluation.figures as figures

    drawn = []
    monkeypatch.setattr(figures, "save_png", lambda fig, path, dpi: drawn.append(fig))
    hr = np.linspace(0.0, 100.0, 48 * 48).reshape(48, 48)
    methods = {"bicubic": hr + 4.0, "fagan": hr + 1.0}
    comparison_figure(hr, methods, "v x4, slice 3 along axis 2", tmp_path / "f.png")
    (fig,) = drawn
    lo, hi = np.percentile(hr, [0.5, 99.5])
    assert fig._suptitle.get_text() == (
        f"v x4, slice 3 along axis 2\ngrey window {lo:.4g} to {hi:.4g}; |error| shown from 0 to 2"
    )
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "|error|"]
    assert len(bars) == 1 and bars[0].get_ylim()[1] == pytest.approx(2.0)  # one bar, on the shown scale
    grey = [im.get_clim() for ax in fig.axes[:-1] for im in ax.get_images() if im.get_cmap().name == "gray"]
    assert len(grey) == 6 and set(grey) == {(lo, hi)}  # one window for every panel


def test_a_comparison_figure_keeps_the_anatomy_s_proportions(tmp_path, monkeypatch) -> None:
    import fagan.evaluation.figures as figures

    drawn = []
    monkeypatch.setattr(figures, "save_png", lambda fig, path, dpi: drawn.append(fig))
    hr = np.linspace(0.0, 100.0, 48 * 16).reshape(48, 16)  # 1 mm along the first axis, 3 mm along the second
    comparison_figure(hr, {"bicubic": hr + 1.0}, "thick", tmp_path / "f.png", pixel_mm=(1.0, 3.0))
    (fig,) = drawn
    aspects = {ax.get_aspect() for ax in fig.axes if ax.get_images() and ax.get_ylabel() != "|error|"}
    assert aspects == {3.0}  # a drawn row is 3 mm high, a drawn column 1 mm wide
