"""Markdown for the asset pages: drop-reason tables and sample previews."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl


def _cell(value: object, width: int = 80) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def counter_table(counts: Mapping[str, int], key: str, unit: str) -> str:
    """A two-column table of counts, largest first."""
    if not counts:
        return f"_no {unit} dropped_"
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return "\n".join([f"| {key} | {unit} |", "|---|---:|", *(f"| {_cell(k)} | {v:,} |" for k, v in rows)])


def preview_markdown(frame: pl.DataFrame | None, columns: Sequence[str]) -> str:
    """The first rows of a table as markdown."""
    if frame is None or frame.height == 0:
        return "_empty_"
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    lines = ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in frame.select(columns).iter_rows(named=True)]
    return header + "\n" + "\n".join(lines)
