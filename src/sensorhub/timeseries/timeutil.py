"""Time parsing and conversion: ISO 8601 in, int64 microseconds (UTC) inside, ISO 8601 (Z) out."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import numpy as np
import numpy.typing as npt

from sensorhub.errors import BadRequest

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_time(value: str, what: str) -> datetime:
    """An ISO 8601 timestamp with ``Z`` or an offset; a date alone means midnight UTC, and a timestamp
    without offset is taken as UTC. Raises :class:`BadRequest` naming ``what``."""
    text = value.strip()
    try:
        if _DATE_ONLY.match(text):
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        dt = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise BadRequest(
            f"{what} '{value}' is not a valid ISO 8601 timestamp; use e.g. 2024-01-01T00:00:00Z"
        ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact integer arithmetic)."""
    d = dt - EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))


def opt_us(dt: datetime | None) -> int | None:
    return None if dt is None else to_us(dt)


def iso(us: int) -> str:
    """ISO 8601 with Z; fractional seconds only when there are any (same forms as :func:`iso_array`)."""
    us = int(us)
    text = (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S")
    frac = us % 1_000_000
    if frac:
        text += f".{frac // 1000:03d}" if frac % 1000 == 0 else f".{frac:06d}"
    return text + "Z"


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
    out: npt.NDArray[np.str_] = np.datetime_as_string(ts.astype("datetime64[us]"), unit=unit, timezone="UTC")  # type: ignore[call-overload]
    return out
