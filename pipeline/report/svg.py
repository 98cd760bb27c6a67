"""The report's charts: pure functions from data to an inline SVG string.

Inline SVG drawn here needs no script, font or request of any kind, so the page opens the same from a
laptop, an S3 console download or an air-gapped cluster. Every bar and line carries a hover title that
says what it counts.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from tokenmill.pipeline.report.read import Histogram

MAX_LINE_POINTS = 1500  # a loss curve of a million steps is drawn from an even subset of them

KEPT, REMOVED, VAL, TRAIN, THRESHOLD, INK, GRID = (
    "#2b6cb0",
    "#dd6b20",
    "#2f855a",
    "#2b6cb0",
    "#c53030",
    "#2d3748",
    "#e2e8f0",
)


def format_number(value: float) -> str:
    """Axis and table numbers: 12,345 / 1.2M / 0.153."""
    if value != value:
        return "–"
    magnitude = abs(value)
    if magnitude >= 1e6:
        for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
            if magnitude >= scale:
                return f"{value / scale:.3g}{suffix}"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3g}" if magnitude >= 0.001 else f"{value:.2e}"


def _nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 × 10^k, whole numbers for counts) covering [low, high]."""
    raw = max((high - low) / count or 1.0, 1.0 if integer else 0.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _text(x: float, y: float, content: str, anchor: str = "middle", size: int = 11, color: str = INK) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{color}">'
        f"{html.escape(content)}</text>"
    )


def _rect(x: float, y: float, width: float, height: float, color: str, tip: str) -> str:
    return (
        f'<rect x="{x:.2f}" y="{y:.2f}" width="{max(width, 0.5):.2f}" height="{max(height, 0):.2f}" '
        f'fill="{color}"><title>{html.escape(tip)}</title></rect>'
    )


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{html.escape(label)}" font-family="sans-serif">'
        + "".join(body)
        + "</svg>"
    )


@dataclass
class Frame:
    """The geometry of one x/y chart: data coordinates mapped into the plot area inside the margins."""

    width: int
    height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    log_x: bool = False
    y_counts: bool = True
    x_counts: bool = False
    left: int = 58
    right: int = 16
    top: int = 14
    bottom: int = 40

    def x(self, value: float) -> float:
        low, high = self.x_range
        if self.log_x:
            value, low, high = math.log10(max(value, 1e-300)), math.log10(low), math.log10(high)
        return self.left + (value - low) / ((high - low) or 1) * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        low, high = self.y_range
        return (
            self.height
            - self.bottom
            - (value - low) / ((high - low) or 1) * (self.height - self.top - self.bottom)
        )

    def axes(self, x_label: str, y_label: str) -> list[str]:
        """Grid lines with labelled ticks, and the axis titles."""
        body = []
        for tick in _nice_ticks(*self.y_range, count=4, integer=self.y_counts):
            y = self.y(tick)
            body.append(
                f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{GRID}"/>'
            )
            body.append(_text(self.left - 5, y + 4, format_number(tick), anchor="end", size=10))
        low, high = self.x_range
        if self.log_x:
            ticks = [10.0**k for k in range(math.ceil(math.log10(low)), math.floor(math.log10(high)) + 1)]
        else:
            ticks = _nice_ticks(low, high, count=5, integer=self.x_counts)
        base = self.height - self.bottom
        for tick in ticks:
            x = self.x(tick)
            body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" stroke="{INK}"/>')
            body.append(_text(x, base + 15, format_number(tick), size=10))
        body.append(
            f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{base}" y2="{base}" stroke="{INK}"/>'
        )
        body.append(_text((self.left + self.width - self.right) / 2, self.height - 6, x_label))
        body.append(
            f'<text transform="translate(13 {(self.top + base) / 2:.0f}) rotate(-90)" text-anchor="middle" '
            f'font-size="11" fill="{INK}">{html.escape(y_label)}</text>'
        )
        return body


def _legend(items: list[tuple[str, str]], x: float, y: float) -> list[str]:
    body = []
    for name, color in items:
        body.append(f'<rect x="{x:.0f}" y="{y - 9:.0f}" width="10" height="10" fill="{color}"/>')
        body.append(_text(x + 14, y, name, anchor="start", size=10))
        x += 22 + 6.5 * len(name)
    return body


def legend_chart(items: list[tuple[str, str]]) -> str:
    """A legend of its own, (name, color) side by side, for charts that share it."""
    return _svg(300, 20, "legend", _legend(items, 2, 14))


def bar_chart(
    label: str, rows: list[tuple[str, list[int]]], series: list[tuple[str, str]], width: int = 900
) -> str:
    """Horizontal bars, one row per label, stacked across series (name, color)."""
    row_height, left, top = 22, 190, 22
    height = top + row_height * len(rows) + 10
    longest = max((sum(values) for _, values in rows), default=0) or 1
    scale = (width - left - 110) / longest
    body = _legend(series, left, 12) if len(series) > 1 else []
    for index, (name, values) in enumerate(rows):
        y = top + index * row_height
        body.append(_text(left - 8, y + 15, name, anchor="end"))
        x = float(left)
        for (series_name, color), value in zip(series, values, strict=True):
            if value:
                body.append(
                    _rect(x, y + 3, value * scale, row_height - 6, color, f"{name}: {value:,} {series_name}")
                )
                x += value * scale
        body.append(_text(x + 6, y + 15, f"{sum(values):,}", anchor="start"))
    return _svg(width, height, label, body)


def histogram_chart(histogram: Histogram, lines: list[tuple[str, float]], width: int = 400) -> str:
    """Kept and removed documents stacked per bin; each recipe threshold a dashed vertical line."""
    edges, stacked = histogram.edges, histogram.kept + histogram.removed
    frame = Frame(width, 210, (edges[0], edges[-1]), (0, max(int(stacked.max()), 1)), log_x=histogram.log)
    body = frame.axes(histogram.column, "documents")
    for low, high, kept, removed in zip(
        edges[:-1], edges[1:], histogram.kept, histogram.removed, strict=True
    ):
        x, bar = frame.x(low), frame.x(high) - frame.x(low) - 0.6
        span = f"{format_number(low)}–{format_number(high)}"
        if kept:
            body.append(
                _rect(x, frame.y(kept), bar, frame.y(0) - frame.y(kept), KEPT, f"{span}: {kept:,} kept")
            )
        if removed:
            top = frame.y(kept + removed)
            body.append(_rect(x, top, bar, frame.y(kept) - top, REMOVED, f"{span}: {removed:,} removed"))
    for name, value in lines:
        x = frame.x(value)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top}" y2="{frame.y(0):.1f}" stroke="{THRESHOLD}" '
            f'stroke-width="1.5" stroke-dasharray="4 3"><title>{html.escape(name)} = {value:g}</title></line>'
        )
        body.append(_text(x + 3, frame.top + 8, f"{value:g}", anchor="start", size=10, color=THRESHOLD))
    return _svg(width, frame.height, f"histogram of {histogram.column}", body)


def column_chart(label: str, columns: list[tuple[str, int, str]], y_label: str, width: int = 900) -> str:
    """Vertical bars (name, value, color) side by side, bar i centred on tick i: tokens per shard."""
    highest = max((value for _, value, _ in columns), default=1) or 1
    frame = Frame(width, 240, (-0.5, len(columns) - 0.5), (0, highest), x_counts=True)
    body = frame.axes("shard", y_label)
    for index, (name, value, color) in enumerate(columns):
        x = frame.x(index - 0.5)
        step = frame.x(index + 0.5) - x
        body.append(
            _rect(
                x + step * 0.1,
                frame.y(value),
                step * 0.8,
                frame.y(0) - frame.y(value),
                color,
                f"{name}: {value:,}",
            )
        )
    return _svg(width, frame.height, label, body)


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_LINE_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_LINE_POINTS)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def line_chart(
    label: str,
    series: list[tuple[str, str, list[tuple[float, float]]]],
    width: int = 900,
    marks: list[tuple[str, float]] | None = None,
) -> str:
    """Lines (name, color, [(x, y)]) on shared axes: the trainer's loss and validation loss by step. Each
    mark (name, y) is a dashed level across the chart: a fine-tune's base model held-out loss."""
    marks = marks or []
    xs = [x for _, _, points in series for x, _ in points]
    ys = [y for _, _, points in series for _, y in points] + [y for _, y in marks]
    pad = (max(ys) - min(ys)) * 0.05 or 0.5
    x_range = (min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1)
    band = 18 if marks else 0  # a level runs the whole width: the legend moves to a band above the plot
    frame = Frame(width, 300, x_range, (min(ys) - pad, max(ys) + pad), y_counts=False, top=14 + band)
    body = frame.axes("step", "loss")
    for name, value in marks:
        y, right, tip = frame.y(value), frame.width - frame.right, html.escape(f"{name} = {value:.4g}")
        body.append(
            f'<line x1="{frame.left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{THRESHOLD}" '
            f'stroke-width="1.5" stroke-dasharray="4 3"><title>{tip}</title></line>'
        )
        body.append(_text(right - 2, y - 4, f"{name} {value:.3g}", anchor="end", size=10, color=THRESHOLD))
    for name, color, points in series:
        path = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in _thin(points))
        body.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6">'
            f"<title>{html.escape(name)}</title></polyline>"
        )
        if len(points) <= 60:
            body += [
                f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2.5" fill="{color}"/>'
                for x, y in points
            ]
    body += _legend([(name, color) for name, color, _ in series], frame.left + 10, frame.top - band + 12)
    return _svg(width, frame.height, label, body)
