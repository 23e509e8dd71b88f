"""Tables: the same numbers in Markdown, HTML and CSV."""

from __future__ import annotations

import csv
import math

import pytest

from fagan.evaluation.tables import Table, format_cell, write_tables
from fagan.metrics.stats import Summary, summarise


def _table() -> Table:
    return Table(
        "table9_demo",
        "A demo table",
        ("method", "x4 PSNR (dB)", "x4 SSIM", "note"),
        (("bicubic", summarise([30.0, 32.0]), summarise([0.8, 0.9]), "a<b"), ("one", 31.5, math.nan, "")),
        "A note.",
    )


def test_cells_are_formatted_by_column() -> None:
    assert format_cell(Summary(31.234, 1.0, 0.0, 0.0, 2), "PSNR") == "31.23 ± 1.00"
    assert format_cell(Summary(0.91234, math.nan, math.nan, math.nan, 1), "SSIM") == "0.9123"
    assert format_cell(math.nan) == "n/a" and format_cell(3) == "3"


def test_markdown_html_and_csv_agree(tmp_path) -> None:
    table = _table()
    md = table.markdown()
    assert md.splitlines()[2] == "| method | x4 PSNR (dB) | x4 SSIM | note |"
    assert "| bicubic | 31.00 ± 1.41 | 0.8500 ± 0.0707 | a<b |" in md
    assert "&lt;" in table.html() and "<td>31.00 ± 1.41</td>" in table.html()
    write_tables([table], tmp_path)
    with open(tmp_path / "table9_demo.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:5] == [
        "method",
        "x4 PSNR (dB) mean",
        "x4 PSNR (dB) std",
        "x4 PSNR (dB) ci95 low",
        "x4 PSNR (dB) ci95 high",
    ]
    assert float(rows[1][1]) == 31.0 and float(rows[2][1]) == 31.5 and rows[2][2] == "nan"
    assert (tmp_path / "tables.md").read_text() == md


def test_rows_must_fit_the_columns() -> None:
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        Table("t", "t", ("a", "b", "c"), (("x", "y"),))
