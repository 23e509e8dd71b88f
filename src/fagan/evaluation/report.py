"""The experiment's report: one self-contained HTML file (tables and embedded PNG figures) that
opens in any browser and can be mailed as it is."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from fagan.atomic import atomic_path
from fagan.evaluation.figures import figure_tag
from fagan.evaluation.tables import Table

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right;white-space:nowrap}"
    "th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}"
    "code,pre{background:#f4f4f4;padding:0.2em 0.4em}pre{padding:1em;overflow:auto}"
    "img{max-width:100%;border:1px solid #ddd}figure{margin:1.5em 0}.note{color:#555;font-size:0.9em}"
)


def write_report(
    path: str | os.PathLike,
    title: str,
    command: str,
    settings: Any,
    tables: Sequence[Table],
    figures: Sequence[Path],
) -> Path:
    """Write the report: the command and settings, a contents list, the tables, the figures."""
    settings_text = "\n".join(
        f"{k}: {v}" for k, v in (asdict(settings) if is_dataclass(settings) else dict(settings)).items()
    )
    contents = "".join(
        f"<li><a href='#{html.escape(t.name)}'>{html.escape(t.title)}</a></li>" for t in tables
    )
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Command: <code>{html.escape(command or '(library call)')}</code></p>",
        "<details><summary>Settings shared by every run</summary>",
        f"<pre>{html.escape(settings_text)}</pre></details>",
        f"<h2>Tables</h2><ol>{contents}</ol>",
        *(t.html() for t in tables),
        "<h2>Figures</h2>",
        *(figure_tag(Path(f)) for f in figures),
        "</body></html>",
    ]
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(parts), encoding="utf-8")
    return path


__all__ = ["write_report"]
