"""A small server-side SVG line chart (no JavaScript, no CDN): one series over a time range."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

from markupsafe import Markup, escape

W, H = 800, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40
# Candidate distances between time labels, in seconds.
TIME_STEPS = (
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    30 * 86400,
    91 * 86400,
    365 * 86400,
)


def _nice_step(span: float, ticks: int) -> float:
    raw = span / max(1, ticks)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _fmt_num(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 10000 or abs(v) < 0.01:
        return f"{v:.3g}"
    return f"{v:,.2f}".rstrip("0").rstrip(".")


@dataclass
class Chart:
    svg: Markup
    points: int
    minimum: float | None
    maximum: float | None
    latest: float | None


PW, PH = W - LEFT - RIGHT, H - TOP - BOTTOM


@dataclass(frozen=True)
class _Frame:
    """Maps a time (epoch seconds) and a value onto the plot area."""

    t0: float
    t1: float
    tspan: float
    ylo: float
    yhi: float
    step: float

    def x(self, t: float) -> float:
        return LEFT + (t - self.t0) / self.tspan * PW

    def y(self, v: float) -> float:
        return TOP + PH - (v - self.ylo) / (self.yhi - self.ylo) * PH


def _frame(values: list[float], start: datetime, end: datetime) -> _Frame:
    """Time range as given; value range widened to round steps (a flat or empty series gets ±1)."""
    t0, t1 = start.timestamp(), end.timestamp()
    tspan = max(1.0, t1 - t0)
    if values:
        lo, hi = min(values), max(values)
    else:
        lo, hi = 0.0, 1.0
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    step = _nice_step(hi - lo, 5)
    ylo, yhi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    return _Frame(t0, t1, tspan, ylo, yhi, step)


def _value_grid(f: _Frame) -> list[str]:
    """Horizontal grid and value labels."""
    parts: list[str] = []
    v = f.ylo
    while v <= f.yhi + f.step / 2:
        yy = f.y(v)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{LEFT - 8}" y="{yy + 4:.1f}" text-anchor="end">{_fmt_num(v)}</text>'
        )
        v += f.step
    return parts


def _time_axis(f: _Frame) -> list[str]:
    """Time labels on round UTC boundaries (whole hours, days, weeks), at most about seven of them."""
    parts: list[str] = []
    tstep = next((st for st in TIME_STEPS if f.tspan / st <= 7), TIME_STEPS[-1])
    fmt = "%H:%M" if tstep < 86400 else "%b %d" if f.tspan <= 400 * 86400 else "%Y-%m"
    t = math.ceil(f.t0 / tstep) * tstep
    while t <= f.t1:
        xx = f.x(t)
        anchor = "start" if xx < LEFT + 30 else "end" if xx > W - RIGHT - 30 else "middle"
        when = datetime.fromtimestamp(t, UTC).strftime(fmt)
        parts.append(f'<line class="tick" x1="{xx:.1f}" x2="{xx:.1f}" y1="{TOP + PH}" y2="{TOP + PH + 5}"/>')
        parts.append(f'<text class="axis" x="{xx:.1f}" y="{H - 14}" text-anchor="{anchor}">{when}</text>')
        t += tstep
    return parts


def _gap(times: list[datetime], bucket_seconds: int, tspan: float) -> float:
    """The distance (seconds) between points beyond which the line breaks. Raw reads (bucket 0) break
    at three times the typical spacing of the points."""
    if bucket_seconds > 0:
        return 3.0 * bucket_seconds
    if len(times) > 2:
        steps = sorted(b.timestamp() - a.timestamp() for a, b in pairwise(times))
        return 3.0 * steps[len(steps) // 2]
    return tspan


def _segments(
    f: _Frame, times: list[datetime], values: list[float], gap: float
) -> list[list[tuple[float, float]]]:
    """The points in plot coordinates, split into runs wherever two points are more than ``gap`` apart."""
    segments: list[list[tuple[float, float]]] = []
    prev: float | None = None
    for when_dt, val in zip(times, values, strict=True):
        ts = when_dt.timestamp()
        if prev is None or ts - prev > gap:
            segments.append([])
        segments[-1].append((f.x(ts), f.y(val)))
        prev = ts
    return segments


def _series_line(segments: list[list[tuple[float, float]]]) -> list[str]:
    """The line (and a soft area under it), one piece per segment; a lone point is a dot."""
    parts: list[str] = []
    base = TOP + PH
    for seg in segments:
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in seg)
        if len(seg) == 1:
            a, b = seg[0]
            parts.append(f'<circle class="dot" cx="{a:.1f}" cy="{b:.1f}" r="2.5"/>')
            continue
        area = f"{seg[0][0]:.1f},{base} {pts} {seg[-1][0]:.1f},{base}"
        parts.append(f'<polygon class="area" points="{area}"/>')
        parts.append(f'<polyline class="line" points="{pts}"/>')
    return parts


def _summary(values: list[float], start: datetime, end: datetime) -> str:
    return f"{len(values)} points from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC" + (
        f"; minimum {_fmt_num(min(values))}, maximum {_fmt_num(max(values))}, latest {_fmt_num(values[-1])}"
        if values
        else "; no data"
    )


def line_chart(
    times: list[datetime],
    values: list[float],
    start: datetime,
    end: datetime,
    label: str,
    bucket_seconds: int,
) -> Chart:
    """An accessible SVG (``role="img"`` with a text summary); gaps longer than three buckets (or three
    typical point spacings for raw data, ``bucket_seconds=0``) break the line."""
    f = _frame(values, start, end)
    parts = _value_grid(f) + _time_axis(f)
    parts += _series_line(_segments(f, times, values, _gap(times, bucket_seconds, f.tspan)))
    if not values:
        parts.append(
            f'<text class="empty" x="{LEFT + PW / 2}" y="{TOP + PH / 2}" text-anchor="middle">'
            "No data in this range</text>"
        )
    summary = _summary(values, start, end)
    base = TOP + PH
    svg = (
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="chart-title" aria-describedby="chart-desc" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="chart-title">{escape(label)}</title>'
        f'<desc id="chart-desc">{escape(summary)}</desc>'
        f'<line class="axisline" x1="{LEFT}" x2="{W - RIGHT}" y1="{base}" y2="{base}"/>'
        + "".join(parts)
        + "</svg>"
    )
    return Chart(
        svg=Markup(svg),  # noqa: S704 - built from numbers and escaped text only
        points=len(values),
        minimum=min(values) if values else None,
        maximum=max(values) if values else None,
        latest=values[-1] if values else None,
    )
