"""Wire models of the export API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from sensorhub.schemas import StrictModel


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
    aggregation: str = Field(
        "raw", description="raw (every point) or a bucket: <n>s, <n>m, <n>h or <n>d, e.g. 1m, 15m, 1h, 1d"
    )
    function: str | None = Field(
        None, description="For buckets: avg (default), min, max, sum, count, first, last"
    )


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
    aggregation: str | None = None
    function: str | None = None
    filename: str
    size_bytes: int | None = None
    error: str | None = None
