"""Charts as inline SVG, drawn on the server: no script, nothing fetched by the browser.

Colours come from classes styled by the dashboard's stylesheet (``s0``, ``s1``, …). Each
mark carries its numbers twice: a ``<title>`` (the browser's tooltip) and ``data-*``
attributes (for tests and for anyone scraping the page).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 720
HEIGHT = 240
# LEFT leaves room for a y-axis label such as "12.50 %" at the phone's larger text size.
LEFT, RIGHT, TOP, BOTTOM = 70, 12, 28, 30
TICKS = 4

Format = Callable[[float], str]


def whole(value: float) -> str:
    return f"{round(value):,}"


def percent(value: float) -> str:
    return f"{value * 100:.2f} %"


@dataclass(frozen=True)
class Series:
    name: str
    key: str  # its data-* attribute name
    values: Sequence[float]


def nice_ceiling(value: float, *, whole_steps: bool = True) -> float:
    """The top of an axis of ``TICKS`` equal steps, at least ``value``: each step is 1, 2,
    2.5 or 5 times a power of ten (a whole number when the axis counts whole things)."""
    if value <= 0:
        return float(TICKS) if whole_steps else 1.0
    raw = value / TICKS
    exponent = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        step = multiple * exponent
        if step >= raw * (1 - 1e-9) and (not whole_steps or float(step).is_integer()):
            return float(step * TICKS)
    return float(10 * exponent * TICKS)  # whole steps below 1: a step of 1


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _frame(title: str, body: list[str], series: Sequence[Series], height: int = HEIGHT) -> str:
    legend = []
    x = LEFT
    for n, one in enumerate(series):
        legend.append(
            f'<rect class="s{n}" x="{x}" y="8" width="10" height="10"/>'
            f'<text class="legend" x="{x + 14}" y="17">{escape(one.name)}</text>'
        )
        # Room for the name at the phone's larger text size (the stylesheet's), too.
        x += 28 + 10 * len(one.name)
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{_attr(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(legend)}{''.join(body)}</svg>"
    )


def _y_axis(top: float, fmt: Format, plot_h: float) -> list[str]:
    parts = []
    for tick in range(TICKS + 1):
        value = top * tick / TICKS
        y = TOP + plot_h - plot_h * tick / TICKS
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(value))}</text>"
        )
    return parts


def _x_labels(labels: Sequence[str], band: float) -> list[str]:
    every = max(1, math.ceil(len(labels) / 10))
    parts = []
    for n, label in enumerate(labels):
        if n % every == 0:
            x = LEFT + band * (n + 0.5)
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 10}" text-anchor="middle">'
                f"{escape(label[5:] if len(label) == 10 else label)}</text>"
            )
    return parts


def stacked_bars(
    title: str, labels: Sequence[str], series: Sequence[Series], fmt: Format = whole
) -> str:
    """One stacked bar per label (a day), a segment per series."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    band = plot_w / max(1, len(labels))
    totals = [sum(s.values[n] for s in series) for n in range(len(labels))]
    top = nice_ceiling(max(totals, default=0))
    body = _y_axis(top, fmt, plot_h)
    for n, label in enumerate(labels):
        data = " ".join(f'data-{s.key}="{_attr(s.values[n])}"' for s in series)
        tip = ", ".join(f"{s.name} {fmt(s.values[n])}" for s in series)
        bars = [f'<g class="bar" data-label="{_attr(label)}" {data}>']
        bars.append(f"<title>{escape(label)}: {escape(tip)}</title>")
        base = 0.0
        for k, one in enumerate(series):
            value = one.values[n]
            if value > 0:
                y = TOP + plot_h - plot_h * (base + value) / top
                h = plot_h * value / top
                x = LEFT + band * n + band * 0.15
                bars.append(
                    f'<rect class="s{k}" x="{x:.1f}" y="{y:.1f}" width="{band * 0.7:.1f}" '
                    f'height="{h:.1f}"/>'
                )
            base += value
        bars.append("</g>")
        body.append("".join(bars))
    body += _x_labels(labels, band)
    return _frame(title, body, series)


def lines(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Format = whole,
    *,
    whole_steps: bool = True,
) -> str:
    """A line per series over the labels; a dot per point."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    band = plot_w / max(1, len(labels))
    peak = max((v for s in series for v in s.values), default=0)
    top = nice_ceiling(peak, whole_steps=whole_steps)
    body = _y_axis(top, fmt, plot_h)
    for k, one in enumerate(series):
        points = [
            (LEFT + band * (n + 0.5), TOP + plot_h - plot_h * value / top)
            for n, value in enumerate(one.values)
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        body.append(f'<polyline class="line s{k}" points="{path}"/>')
        for (x, y), label, value in zip(points, labels, one.values, strict=True):
            body.append(
                f'<circle class="dot s{k}" cx="{x:.1f}" cy="{y:.1f}" r="3" '
                f'data-label="{_attr(label)}" data-{one.key}="{_attr(value)}">'
                f"<title>{escape(label)}: {escape(one.name)} {escape(fmt(value))}</title></circle>"
            )
    body += _x_labels(labels, band)
    return _frame(title, body, series)


def ranking(title: str, items: Sequence[tuple[str, float]], key: str, fmt: Format = whole) -> str:
    """Horizontal bars, one per item, longest first as given."""
    row_h = 26
    height = TOP + row_h * max(1, len(items)) + 8
    label_w = 170
    plot_w = WIDTH - label_w - RIGHT - 70
    peak = max((v for _, v in items), default=0) or 1
    body = []
    for n, (label, value) in enumerate(items):
        y = TOP + row_h * n
        shown = label if len(label) <= 24 else label[:23] + "…"
        w = plot_w * value / peak
        body.append(
            f'<g class="rank" data-label="{_attr(label)}" data-{key}="{_attr(value)}">'
            f"<title>{escape(label)}: {escape(fmt(value))}</title>"
            f'<text class="axis" x="{label_w - 8}" y="{y + 16}" text-anchor="end">'
            f"{escape(shown)}</text>"
            f'<rect class="s0" x="{label_w}" y="{y + 4}" width="{max(w, 1):.1f}" height="16"/>'
            f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + 16}">'
            f"{escape(fmt(value))}</text></g>"
        )
    return _frame(title, body, [], height)


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: its label, its parts (one per series, drawn left to right), its
    ``data-*`` attributes (name -> value) and its tooltip."""

    label: str
    parts: Sequence[float]
    data: Mapping[str, object]
    tip: str


def hbars(title: str, bars: Sequence[Bar], series: Sequence[str], fmt: Format = whole) -> str:
    """Horizontal stacked bars, one per ``Bar`` in the order given, each as long as the sum
    of its parts (the longest fills the plot), its total written after it; a legend of the
    ``series``' names. Each bar is a ``<g class="hbar">`` with ``data-label``, its ``data``
    and a ``<title>``."""
    row_h = 26
    height = TOP + row_h * max(1, len(bars)) + 8
    label_w = 190  # a label up to 24 characters at the phone's larger text size
    plot_w = WIDTH - label_w - RIGHT - 80
    peak = max((sum(b.parts) for b in bars), default=0) or 1
    body = []
    for n, bar in enumerate(bars):
        y = TOP + row_h * n
        shown = bar.label if len(bar.label) <= 24 else bar.label[:23] + "\N{HORIZONTAL ELLIPSIS}"
        data = "".join(f' data-{name}="{_attr(value)}"' for name, value in bar.data.items())
        parts = [
            f'<g class="hbar" data-label="{_attr(bar.label)}"{data}>'
            f"<title>{escape(bar.tip)}</title>"
            f'<text class="axis" x="{label_w - 8}" y="{y + 16}" text-anchor="end">'
            f"{escape(shown)}</text>"
        ]
        x = float(label_w)
        for k, value in enumerate(bar.parts):
            if value > 0:
                w = plot_w * value / peak
                parts.append(
                    f'<rect class="s{k}" x="{x:.1f}" y="{y + 4}" width="{max(w, 1):.1f}" '
                    'height="16"/>'
                )
                x += w
        parts.append(f'<text class="value" x="{x + 6:.1f}" y="{y + 16}">')
        parts.append(f"{escape(fmt(sum(bar.parts)))}</text></g>")
        body.append("".join(parts))
    return _frame(title, body, [Series(name, name, []) for name in series], height + 8)
