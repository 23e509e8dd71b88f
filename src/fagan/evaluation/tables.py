"""Result tables written three ways: Markdown (to read), CSV (to load), HTML (for the report).

A cell is a string, a number, or a :class:`fagan.metrics.stats.Summary`. Markdown and HTML show
a summary as ``mean ± std``; CSV spreads it over four columns (mean, std and the 95% confidence
interval) so nothing is lost to formatting.
"""

from __future__ import annotations

import csv
import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from fagan.atomic import atomic_path
from fagan.metrics.stats import Summary

Cell = str | int | float | Summary


def _digits(column: str) -> int:
    """Decimals for a column: SSIM and p-values to four, everything else (dB, FID, seconds) to two."""
    return 4 if "ssim" in column.lower() or column.startswith("p ") else 2


def format_cell(value: Cell, column: str = "") -> str:
    digits = _digits(column)
    if isinstance(value, Summary):
        if math.isnan(value.std):
            return f"{value.mean:.{digits}f}"
        return f"{value.mean:.{digits}f} ± {value.std:.{digits}f}"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


@dataclass(frozen=True)
class Table:
    """One result table. ``name`` is its file stem (``table6_ablation``)."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str = ""

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.name}: a row has {len(row)} cells for {len(self.columns)} columns"
                )

    def markdown(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.columns) + "|"
        body = [
            "| " + " | ".join(format_cell(v, c) for v, c in zip(row, self.columns, strict=True)) + " |"
            for row in self.rows
        ]
        parts = [f"### {self.title}", "", head, rule, *body]
        if self.note:
            parts += ["", self.note]
        return "\n".join(parts) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(format_cell(v, c))}</td>" for v, c in zip(row, self.columns, strict=True)
            )
            + "</tr>"
            for row in self.rows
        )
        note = f"<p class='note'>{html.escape(self.note)}</p>" if self.note else ""
        return (
            f"<h3 id='{html.escape(self.name)}'>{html.escape(self.title)}</h3>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
        )

    def csv_rows(self) -> list[list[str]]:
        summary_columns = {
            i for i, _ in enumerate(self.columns) if any(isinstance(r[i], Summary) for r in self.rows)
        }
        header: list[str] = []
        for i, c in enumerate(self.columns):
            header += (
                [f"{c} mean", f"{c} std", f"{c} ci95 low", f"{c} ci95 high"] if i in summary_columns else [c]
            )
        out = [header]
        for row in self.rows:
            line: list[str] = []
            for i, v in enumerate(row):
                if i in summary_columns:
                    if isinstance(v, Summary):
                        s = v
                    else:  # a plain number (or an empty cell) in a column of summaries
                        mean = float(v) if isinstance(v, (int, float)) else math.nan
                        s = Summary(mean, math.nan, math.nan, math.nan, 1)
                    line += [repr(float(x)) for x in (s.mean, s.std, s.ci_low, s.ci_high)]
                else:
                    line.append(repr(v) if isinstance(v, float) else str(v))
            out.append(line)
        return out

    def write_csv(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(self.csv_rows())


def write_tables(
    tables: Sequence[Table], folder: str | os.PathLike, markdown_name: str = "tables.md"
) -> None:
    """Each table as ``<name>.csv`` in ``folder``, and all of them in one Markdown file."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for table in tables:
        table.write_csv(folder / f"{table.name}.csv")
    with atomic_path(folder / markdown_name) as tmp:
        Path(tmp).write_text("\n".join(t.markdown() for t in tables), encoding="utf-8")


__all__ = ["Cell", "Table", "format_cell", "write_tables"]
