"""Small charts as PNG for the asset pages (the Dagster UI shows pictures through markdown)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

_BAR = (52, 101, 164)
_INK = (40, 40, 40)


def bar_chart_png(labels: Sequence[str], values: Sequence[int], title: str, width: int = 560, height: int = 260) -> bytes:
    """A bar chart, one bar per label, with the title and the tallest value written on it."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    left, top, bottom = 40, 24, height - 28
    draw.text((left, 4), title, fill=_INK, font=font)
    draw.line([(left, bottom), (width - 8, bottom)], fill=_INK)
    peak = max(values, default=0) or 1
    draw.text((4, top), f"{peak:,}", fill=_INK, font=font)
    slot = (width - left - 8) / max(len(values), 1)
    for i, (label, value) in enumerate(zip(labels, values)):
        x0 = left + i * slot + 1
        bar_top = bottom - (bottom - top) * value / peak
        draw.rectangle([x0, bar_top, x0 + max(slot - 2, 1), bottom], fill=_BAR)
        if i % max(1, len(labels) // 12) == 0:
            draw.text((x0, bottom + 4), label, fill=_INK, font=font)
    buffer = io.BytesIO()
    image.convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def sparkline_png(values: Sequence[int], bar_width: int = 2, gap: int = 1, height: int = 64) -> bytes:
    """A 1-bit bar chart without text: small enough (a few hundred bytes) for the UI to show inline."""
    width = len(values) * (bar_width + gap) + gap
    image = Image.new("1", (width, height), 1)
    draw = ImageDraw.Draw(image)
    peak = max(values, default=0) or 1
    for i, value in enumerate(values):
        if value:
            x0 = gap + i * (bar_width + gap)
            draw.rectangle([x0, height - 2 - (height - 4) * value / peak, x0 + bar_width - 1, height - 2], fill=0)
    draw.line([(0, height - 1), (width, height - 1)], fill=0)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def downsample(values: Sequence[float], points: int) -> list[float]:
    """At most ``points`` values, evenly picked (first and last kept), for a curve of any length."""
    if len(values) <= points:
        return list(values)
    step = (len(values) - 1) / (points - 1)
    return [values[round(i * step)] for i in range(points)]


def line_chart_png(values: Sequence[float], title: str, x_label: str, width: int = 560, height: int = 260) -> bytes:
    """A curve through the values (e.g. cluster sizes, largest first), with the title and the peak written on it."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    left, top, bottom, right = 40, 24, height - 28, width - 8
    draw.text((left, 4), title, fill=_INK, font=font)
    draw.line([(left, bottom), (right, bottom)], fill=_INK)
    draw.line([(left, top), (left, bottom)], fill=_INK)
    peak = max(values, default=0) or 1
    draw.text((4, top), f"{peak:,.0f}", fill=_INK, font=font)
    draw.text((left, bottom + 4), f"1 .. {len(values):,} {x_label}", fill=_INK, font=font)
    points = downsample(values, right - left)
    span = max(len(points) - 1, 1)
    xy = [(left + (right - left) * i / span, bottom - (bottom - top) * v / peak) for i, v in enumerate(points)]
    if len(xy) > 1:
        draw.line(xy, fill=_BAR, width=2)
    elif xy:
        draw.ellipse([xy[0][0] - 2, xy[0][1] - 2, xy[0][0] + 2, xy[0][1] + 2], fill=_BAR)
    buffer = io.BytesIO()
    image.convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def histogram(values: Sequence[int], lo: int, hi: int) -> tuple[list[str], list[int]]:
    """Counts per integer value in [lo, hi]; values outside are added to the edge bins."""
    counts = [0] * (hi - lo + 1)
    for v in values:
        counts[min(max(v, lo), hi) - lo] += 1
    return [str(v) for v in range(lo, hi + 1)], counts


def contact_sheet_jpeg(rows: Sequence[tuple[str, Sequence[Image.Image]]], thumb: int = 96, per_row: int = 8) -> bytes:
    """Thumbnails in labelled rows (one row per label), as one JPEG."""
    label_w, pad = 150, 4
    width = label_w + per_row * (thumb + pad) + pad
    height = max(len(rows), 1) * (thumb + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for r, (label, images) in enumerate(rows):
        y = pad + r * (thumb + pad)
        draw.text((4, y + thumb // 2 - 6), label[:24], fill=_INK, font=font)
        for c, image in enumerate(images[:per_row]):
            tile = image.copy()
            tile.thumbnail((thumb, thumb))
            sheet.paste(tile, (label_w + pad + c * (thumb + pad) + (thumb - tile.width) // 2, y + (thumb - tile.height) // 2))
    buffer = io.BytesIO()
    sheet.save(buffer, format="JPEG", quality=80, optimize=True)
    return buffer.getvalue()


def markdown_image(data: bytes, alt: str, mime: str = "image/png") -> str:
    return f"![{alt}](data:{mime};base64,{base64.b64encode(data).decode('ascii')})"
