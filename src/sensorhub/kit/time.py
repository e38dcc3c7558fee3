"""Time parsing and conversion: ISO 8601 in, int64 microseconds (UTC) inside, ISO 8601 (Z) out."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from sensorhub.errors import BadRequest

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# The supported time range. Points must lie in [MIN_TIME, MAX_TIME); the bounds of a read (start_time,
# end_time, from, to) in [MIN_TIME, MAX_TIME]. Narrower than int64 µs on purpose: pandas
# (datetime64[ns] ends 2262-04-11), Arrow/Parquet nanosecond readers and every page's date arithmetic
# (a bucket, a day or a year beside a timestamp) stay far from any overflow.
MIN_TIME = datetime(1900, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)
RANGE_TEXT = "1900-01-01T00:00:00Z (inclusive) to 2200-01-01T00:00:00Z (exclusive)"


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact integer arithmetic)."""
    d = dt - EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


MIN_US = to_us(MIN_TIME)
MAX_US = to_us(MAX_TIME)


def latest(*values: datetime | None) -> datetime | None:
    """The latest of ``values`` that are not None (None: none is)."""
    present = [v for v in values if v is not None]
    return max(present) if present else None


def parse_time(value: str, what: str) -> datetime:
    """An ISO 8601 timestamp with ``Z`` or an offset; a date alone means midnight UTC, and a timestamp
    without offset is taken as UTC. Raises :class:`BadRequest` naming ``what`` when it is not one, or
    when it lies outside ``[MIN_TIME, MAX_TIME]``."""
    dt = parse_iso(value, what)
    if not MIN_TIME <= dt <= MAX_TIME:
        raise BadRequest(f"{what} '{value[:60]}' is outside the supported time range, {RANGE_TEXT}")
    return dt


def parse_iso(value: str, what: str) -> datetime:
    """:func:`parse_time` without the range check (for callers that check the range themselves)."""
    text = value.strip()
    try:
        if _DATE_ONLY.match(text):
            d = date.fromisoformat(text)
            dt = datetime(d.year, d.month, d.day, tzinfo=UTC)
        else:
            dt = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise BadRequest(
            f"{what} '{value[:60]}' is not a valid ISO 8601 timestamp; use e.g. 2024-01-01T00:00:00Z"
        ) from None
    try:
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        raise BadRequest(f"{what} '{value[:60]}' is outside the supported time range, {RANGE_TEXT}") from None
    return dt


def check_points_in_range(
    ts: npt.NDArray[np.int64], what: Callable[[int], str], error: type[BadRequest] = BadRequest
) -> None:
    """Raise ``error`` (:class:`BadRequest` or a kind of it) when a point time (µs) lies outside
    ``[MIN_TIME, MAX_TIME)``; ``what(i)`` names the ``i``-th one, e.g. ``record 3: timestamp``."""
    if len(ts) == 0:
        return
    bad = (ts < MIN_US) | (ts >= MAX_US)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise error(f"{what(i)} {iso(int(ts[i]))} is outside the supported time range, {RANGE_TEXT}")


def clamp_us(us: int) -> int:
    """``us`` moved into the supported range (for display of data stored before the range was enforced)."""
    return min(max(int(us), MIN_US), MAX_US - 1)


_DATETIME_MIN_US = to_us(datetime.min.replace(tzinfo=UTC))
_DATETIME_MAX_US = to_us(datetime.max.replace(tzinfo=UTC))


def display_time(us: int) -> datetime:
    """``us`` as a datetime for display, clamped to what Python's datetime holds (years 1-9999)."""
    return from_us(min(max(int(us), _DATETIME_MIN_US), _DATETIME_MAX_US))


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))


def opt_us(dt: datetime | None) -> int | None:
    return None if dt is None else to_us(dt)


_NAIVE_EPOCH = EPOCH.replace(tzinfo=None)


def iso(us: int) -> str:
    """ISO 8601 with Z; fractional seconds only when there are any (same forms as :func:`iso_array`)."""
    us = int(us)
    frac = us % 1_000_000
    try:
        # isoformat of a naive whole second: "YYYY-MM-DDTHH:MM:SS", ~3x cheaper than strftime
        text = (_NAIVE_EPOCH + timedelta(microseconds=us - frac)).isoformat()
    except OverflowError:  # beyond Python's datetime (years 1-9999): numpy still names it
        return str(np.datetime64(us, "us")) + "Z"
    if frac:
        text += f".{frac // 1000:03d}" if frac % 1000 == 0 else f".{frac:06d}"
    return text + "Z"


def iso_many(ts: Sequence[int]) -> list[str]:
    """``[iso(t) for t in ts]``, vectorised: each timestamp in the same form :func:`iso` gives it (whole
    seconds, milliseconds or microseconds, chosen per timestamp)."""
    if len(ts) < 8:  # numpy's fixed cost is not worth it
        return [iso(t) for t in ts]
    a = np.asarray(ts, dtype=np.int64)
    frac = a % 1_000_000
    out = np.empty(len(a), dtype="<U40")
    for unit, pick in (("s", frac == 0), ("ms", (frac != 0) & (frac % 1000 == 0)), ("us", frac % 1000 != 0)):
        if pick.any():
            out[pick] = np.datetime_as_string(a[pick].astype("datetime64[us]"), unit=unit, timezone="UTC")  # type: ignore[call-overload,unused-ignore]
    return out.tolist()


def iso_array(ts: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """ISO 8601 strings with Z for an array of microsecond timestamps (vectorised)."""
    if len(ts) == 0:
        return np.empty(0, dtype="<U20")
    if not np.any(ts % 1_000_000):
        unit = "s"
    elif not np.any(ts % 1_000):
        unit = "ms"
    else:
        unit = "us"
    out: npt.NDArray[np.str_] = np.datetime_as_string(ts.astype("datetime64[us]"), unit=unit, timezone="UTC")  # type: ignore[call-overload,unused-ignore]
    return out


# A date, optionally a time (seconds and 1-6 fraction digits optional) and an offset. Written so that
# Python's ``re`` and PostgreSQL's ARE read it the same way.
OBSERVED_AT_FORM = (
    r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?)?$"
)
_FORM = re.compile(OBSERVED_AT_FORM)


def observed_us(value: Any) -> int | None:
    """``observedAt`` as microseconds since the epoch (UTC; no offset = UTC), or ``None`` when it is not
    a string in :data:`OBSERVED_AT_FORM`. Registered as an SQL function on SQLite (see :mod:`sensorhub.db`;
    the time windows of :mod:`sensorhub.entities.windows` read ``observedAt`` through it)."""
    if not isinstance(value, str) or not _FORM.match(value):
        return None
    try:
        dt = datetime.fromisoformat(value)
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return to_us(dt)
