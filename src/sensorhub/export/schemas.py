"""Wire models of the export API, and its one vocabulary for bucketed exports.

As in time series v2, ``aggregation`` is the **function** applied per bucket (``avg``, ``min``, …); the
bucket width has its own name, ``bucket`` (``raw`` or ``<n>s|m|h|d``). Before this vocabulary the export
API put the bucket in ``aggregation`` and the function in ``function``; that older form is still read,
because it cannot be mistaken for the current one (a bucket label is never a function name), and a
request mixing the two forms is a 400 naming the current fields. Nothing is ever read with a changed
meaning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from sensorhub.errors import BadRequest
from sensorhub.schemas import StrictModel
from sensorhub.timeseries.rollups import AGGREGATIONS

# At most 9 digits: any larger count is out of range anyway, and int() of a huge digit string is slow.
_BUCKET = re.compile(r"^\s*(\d{1,9})\s*([smhd])\s*$")
# What a bucket label looks like at all (any digit count): tells the older request form apart.
_BUCKET_LIKE = re.compile(r"^\s*(raw|\d+\s*[smhd])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_BUCKET_SECONDS = 366 * 86400


@dataclass(frozen=True, slots=True)
class Bucketing:
    """How an export is bucketed: ``raw`` (every point) or a bucket label with its width and function."""

    bucket: str  # "raw" or a normalised label such as "15m"
    seconds: int | None  # None for raw
    aggregation: str | None  # the function per bucket; None for raw


def parse_bucketing(
    bucket: str | None, aggregation: str | None, names: tuple[str, str] = ("bucket", "aggregation")
) -> Bucketing:
    """Check a bucket and a function; messages use the field ``names`` the caller sent."""
    bucket_name, aggregation_name = names
    fn = _function(aggregation, names)
    label = (bucket or "raw").strip().lower()
    if label == "raw":
        if fn is not None:
            raise BadRequest(
                f"'{aggregation_name}' applies to bucketed exports only: set '{bucket_name}' to a bucket "
                "like '1h'"
            )
        return Bucketing("raw", None, None)
    m = _BUCKET.match(label)
    if m is None:
        raise BadRequest(
            f"{bucket_name} '{bucket}' is not understood: use 'raw' or a bucket such as '1m', '15m', '1h' "
            "or '1d' (units s, m, h, d)"
        )
    seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if not 1 <= seconds <= MAX_BUCKET_SECONDS:
        raise BadRequest(f"{bucket_name} '{bucket}' must be between 1s and 366d")
    return Bucketing(f"{m.group(1)}{m.group(2)}", seconds, fn or "avg")


def _function(aggregation: str | None, names: tuple[str, str]) -> str | None:
    if aggregation is None:
        return None
    fn = aggregation.strip().lower()
    if fn not in AGGREGATIONS:
        raise BadRequest(
            f"unknown {names[1]} '{aggregation}'; use one of: {', '.join(AGGREGATIONS)} "
            f"(the bucket width goes in '{names[0]}')"
        )
    return fn


def _looks_like_bucket(value: str | None) -> bool:
    return value is not None and _BUCKET_LIKE.match(value) is not None


class SeriesRef(StrictModel):
    entity_id: str = Field(
        description="NGSI-LD entity id (or asset id)", examples=["urn:ngsi-ld:WeatherObserved:station-1"]
    )
    attribute: str = Field(examples=["temperature"])


class ExportRequest(StrictModel):
    """``POST /api/datahub/export``. Times are ISO 8601 (``Z`` or an offset; no offset = UTC), half-open
    ``[start_time, end_time)``."""

    start_time: str = Field(examples=["2026-01-01T00:00:00Z"])
    end_time: str = Field(examples=["2026-01-31T00:00:00Z"])
    series: list[SeriesRef] = Field(description="One column per series, in this order")
    format: str | None = Field(
        None, description="csv | parquet (required, except with Accept: text/csv where it defaults to csv)"
    )
    bucket: str | None = Field(
        None,
        description="raw (default: every point) or a bucket width: <n>s, <n>m, <n>h or <n>d, e.g. 1m, 15m, 1h, 1d",
        examples=["1h"],
    )
    aggregation: str | None = Field(
        None,
        description=(
            "The function per bucket, as in time series v2: avg (default), min, max, sum, count, first, "
            "last. (Older form, still read: the bucket here and the function in 'function'.)"
        ),
        examples=["avg"],
    )
    function: str | None = Field(
        None,
        deprecated=True,
        description="Older form only: the function, when 'aggregation' holds the bucket. Use 'aggregation'.",
    )

    def bucketing(self) -> Bucketing:
        """The bucket and function asked for, in either form (see the module docstring)."""
        if self.function is None and not _looks_like_bucket(self.aggregation):
            return parse_bucketing(self.bucket, self.aggregation)
        if self.bucket is not None or (
            self.aggregation is not None and not _looks_like_bucket(self.aggregation)
        ):
            raise BadRequest(
                "this request mixes the older export form ('aggregation' = bucket, 'function') with the "
                "current one: send the bucket in 'bucket' and the function in 'aggregation', "
                'e.g. {"bucket": "1h", "aggregation": "max"}'
            )
        return parse_bucketing(self.aggregation, self.function, ("aggregation", "function"))


def recorded_bucketing(request: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(bucket, aggregation)`` of a recorded export request, also of one recorded in the older form."""
    if "bucket" in request:
        return request.get("bucket"), request.get("aggregation")
    return request.get("aggregation"), request.get("function")


class ColumnOut(BaseModel):
    name: str
    entity_id: str | None = None
    attribute: str | None = None
    unit: str | None = None


class ExportOut(BaseModel):
    id: str
    status: str = Field(description="running | ready | failed | expired")
    format: str
    download_url: str | None = Field(None, description="Signed URL; no token needed. Absent unless ready.")
    expires_in: int = Field(description="Seconds until the download URL and the file expire")
    expires_at: datetime
    created_at: datetime
    rows: int = Field(description="Data rows in the file (the header is not counted)")
    truncated: bool = Field(description="True when the row cap cut the export short")
    row_cap: int
    columns: list[str] = Field(description="timestamp, then <entity_id>.<attribute> per series")
    units: dict[str, str | None]
    start_time: str | None = None
    end_time: str | None = None
    bucket: str | None = Field(None, description="raw, or the bucket width such as 1h")
    aggregation: str | None = Field(None, description="The function per bucket (null for raw)")
    filename: str
    size_bytes: int | None = None
    error: str | None = None
