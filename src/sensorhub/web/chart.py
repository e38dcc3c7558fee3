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
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
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

    def x(t: float) -> float:
        return LEFT + (t - t0) / tspan * pw

    def y(v: float) -> float:
        return TOP + ph - (v - ylo) / (yhi - ylo) * ph

    parts: list[str] = []
    # Horizontal grid and value labels.
    v = ylo
    while v <= yhi + step / 2:
        yy = y(v)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{LEFT - 8}" y="{yy + 4:.1f}" text-anchor="end">{_fmt_num(v)}</text>'
        )
        v += step
    # Time labels on round UTC boundaries (whole hours, days, weeks), at most about seven of them.
    tstep = next((st for st in TIME_STEPS if tspan / st <= 7), TIME_STEPS[-1])
    fmt = "%H:%M" if tstep < 86400 else "%b %d" if tspan <= 400 * 86400 else "%Y-%m"
    t = math.ceil(t0 / tstep) * tstep
    while t <= t1:
        xx = x(t)
        anchor = "start" if xx < LEFT + 30 else "end" if xx > W - RIGHT - 30 else "middle"
        when = datetime.fromtimestamp(t, UTC).strftime(fmt)
        parts.append(f'<line class="tick" x1="{xx:.1f}" x2="{xx:.1f}" y1="{TOP + ph}" y2="{TOP + ph + 5}"/>')
        parts.append(f'<text class="axis" x="{xx:.1f}" y="{H - 14}" text-anchor="{anchor}">{when}</text>')
        t += tstep
    # The line (and a soft area under it), broken at gaps.
    # Raw reads (bucket 0) break at three times the typical spacing of the points.
    if bucket_seconds > 0:
        gap = 3.0 * bucket_seconds
    elif len(times) > 2:
        steps = sorted(b.timestamp() - a.timestamp() for a, b in pairwise(times))
        gap = 3.0 * steps[len(steps) // 2]
    else:
        gap = tspan
    segments: list[list[tuple[float, float]]] = []
    prev: float | None = None
    for when_dt, val in zip(times, values, strict=True):
        ts = when_dt.timestamp()
        if prev is None or ts - prev > gap:
            segments.append([])
        segments[-1].append((x(ts), y(val)))
        prev = ts
    base = TOP + ph
    for seg in segments:
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in seg)
        if len(seg) == 1:
            a, b = seg[0]
            parts.append(f'<circle class="dot" cx="{a:.1f}" cy="{b:.1f}" r="2.5"/>')
            continue
        area = f"{seg[0][0]:.1f},{base} {pts} {seg[-1][0]:.1f},{base}"
        parts.append(f'<polygon class="area" points="{area}"/>')
        parts.append(f'<polyline class="line" points="{pts}"/>')
    if not values:
        parts.append(
            f'<text class="empty" x="{LEFT + pw / 2}" y="{TOP + ph / 2}" text-anchor="middle">'
            "No data in this range</text>"
        )
    summary = f"{len(values)} points from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC" + (
        f"; minimum {_fmt_num(min(values))}, maximum {_fmt_num(max(values))}, latest {_fmt_num(values[-1])}"
        if values
        else "; no data"
    )
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
