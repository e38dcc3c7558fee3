"""Time values: what users may pass, and what goes over the wire.

Rule: a time must say which time zone it is in. ISO strings need ``Z`` or an offset, ``datetime``
objects must be aware. Naive values are rejected, because a naive time in a notebook is usually local
time and silently reading it as UTC shifts the data by hours. The one exception is a bare calendar
date (``"2026-01-01"`` or a ``datetime.date``), which means midnight UTC of that day.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

TimeLike = str | datetime | date

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def to_utc(value: TimeLike, name: str = "time") -> datetime:
    """Parse ``value`` into an aware UTC datetime, or raise ``ValueError`` naming ``name``."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError(
                f"{name} is a naive datetime (no time zone); pass an aware one such as "
                f"datetime(2026, 1, 1, tzinfo=UTC), or a string like '2026-01-01T00:00:00Z'"
            )
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        text = value.strip()
        if _DATE_ONLY.fullmatch(text):
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        try:
            parsed = parse_iso(text)
        except ValueError:
            raise ValueError(
                f"{name} {value!r} is not an ISO 8601 time such as '2026-01-01T00:00:00Z'"
            ) from None
        if parsed.tzinfo is None:
            raise ValueError(
                f"{name} {value!r} has no time zone; add 'Z' for UTC or an offset such as '+01:00'"
            )
        return parsed.astimezone(UTC)
    raise TypeError(f"{name} must be an ISO 8601 string, a datetime or a date, not {type(value).__name__}")


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 time as the server writes it (``Z`` or an offset)."""
    return datetime.fromisoformat(text)


def format_utc(value: TimeLike, name: str = "time") -> str:
    """The wire form: ISO 8601 in UTC with a ``Z`` suffix."""
    dt = to_utc(value, name)
    spec = "seconds" if dt.microsecond == 0 else "microseconds"
    return dt.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
