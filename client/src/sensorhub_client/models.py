"""Typed results for the endpoints whose answers the client reshapes."""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _frames
from ._times import parse_iso

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "AsyncExportResult",
    "BackfillResult",
    "ExportResult",
    "QueryResult",
    "SeriesValues",
    "Timeseries",
]


def _time_or_none(value: Any) -> datetime | None:
    return parse_iso(value) if isinstance(value, str) else None


@dataclass(frozen=True)
class Timeseries:
    """One entity's attributes on a shared time axis (``GET /api/timeseries/v2/entities/{id}/data``)."""

    entity_id: str
    start_time: datetime | None
    end_time: datetime | None
    bucket_seconds: int | None
    aggregation: str | None
    timestamps: list[datetime]
    attributes: dict[str, list[float | None]]
    units: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Timeseries:
        return cls(
            entity_id=str(body.get("entity_id", "")),
            start_time=_time_or_none(body.get("start_time")),
            end_time=_time_or_none(body.get("end_time")),
            bucket_seconds=body.get("bucket_seconds"),
            aggregation=body.get("aggregation"),
            timestamps=[parse_iso(t) for t in body.get("timestamps", [])],
            attributes={str(k): list(v) for k, v in (body.get("attributes") or {}).items()},
            units=dict(body.get("units") or {}),
        )

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with a UTC ``timestamp`` index and one float64 column per attribute."""
        attrs: dict[str, Any] = {
            "entity_id": self.entity_id,
            "bucket_seconds": self.bucket_seconds,
            "aggregation": self.aggregation,
        }
        if self.units:
            attrs["units"] = dict(self.units)
        return _frames.wide_frame(self.timestamps, self.attributes, attrs)


@dataclass(frozen=True)
class SeriesValues:
    """One named series of a multi-series query."""

    entity_id: str
    attribute: str
    unit: str | None
    values: list[float | None]


@dataclass(frozen=True)
class QueryResult:
    """Several series aligned on one time axis (``POST /api/timeseries/v2/query``)."""

    start_time: datetime | None
    end_time: datetime | None
    bucket_seconds: int | None
    timestamps: list[datetime]
    series: dict[str, SeriesValues]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> QueryResult:
        series = {
            str(name): SeriesValues(
                entity_id=str(item.get("entity_id", "")),
                attribute=str(item.get("attribute", "")),
                unit=item.get("unit"),
                values=list(item.get("values") or []),
            )
            for name, item in (body.get("series") or {}).items()
        }
        return cls(
            start_time=_time_or_none(body.get("start_time")),
            end_time=_time_or_none(body.get("end_time")),
            bucket_seconds=body.get("bucket_seconds"),
            timestamps=[parse_iso(t) for t in body.get("timestamps", [])],
            series=series,
        )

    def to_frame(self) -> pd.DataFrame:
        """Columns named ``<entity_id>.<attribute>``; units in ``frame.attrs["units"]``."""
        attrs = {
            "bucket_seconds": self.bucket_seconds,
            "units": {name: s.unit for name, s in self.series.items()},
        }
        columns = {name: s.values for name, s in self.series.items()}
        return _frames.wide_frame(self.timestamps, columns, attrs)


@dataclass(frozen=True)
class BackfillResult:
    """Totals over every chunk of a backfill."""

    accepted: int = 0
    duplicates: int = 0
    chunks: int = 0


def _warn_if_truncated(truncated: bool, rows: int | None) -> None:
    if truncated:
        warnings.warn(
            f"export truncated at {rows} rows (the server's cap for this token); "
            "narrow the time range or series and export in parts",
            UserWarning,
            stacklevel=4,
        )


@dataclass(frozen=True)
class _ExportFields:
    download_url: str
    expires_in: int | None
    format: str
    rows: int | None
    truncated: bool


@dataclass(frozen=True)
class ExportResult(_ExportFields):
    """A finished export. The download URL is signed; no token is sent when fetching it."""

    _fetch: Callable[[str, Path | None], bytes] = field(repr=False, compare=False)

    def download(self, path: str | Path) -> Path:
        """Save the file to ``path`` (a file name, or a directory to save ``export.<format>`` in)."""
        target = _target(Path(path), self.format)
        self._fetch(self.download_url, target)
        return target

    def content(self) -> bytes:
        """The file's bytes, in memory."""
        return self._fetch(self.download_url, None)

    def to_frame(self) -> pd.DataFrame:
        """Download into memory and read as a DataFrame (Parquet needs pyarrow)."""
        return _frames.file_frame(self.content(), self.format)


@dataclass(frozen=True)
class AsyncExportResult(_ExportFields):
    """The :class:`ExportResult` of :class:`~sensorhub_client.AsyncClient`; its methods are coroutines."""

    _fetch: Callable[[str, Path | None], Awaitable[bytes]] = field(repr=False, compare=False)

    async def download(self, path: str | Path) -> Path:
        """Save the file to ``path`` (a file name, or a directory to save ``export.<format>`` in)."""
        target = _target(Path(path), self.format)
        await self._fetch(self.download_url, target)
        return target

    async def content(self) -> bytes:
        """The file's bytes, in memory."""
        return await self._fetch(self.download_url, None)

    async def to_frame(self) -> pd.DataFrame:
        """Download into memory and read as a DataFrame (Parquet needs pyarrow)."""
        return _frames.file_frame(await self.content(), self.format)


def _target(path: Path, fmt: str) -> Path:
    return path / f"export.{fmt}" if path.is_dir() else path


def export_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """Fields of an export answer, warning when the server truncated it."""
    rows = body.get("rows")
    truncated = bool(body.get("truncated", False))
    _warn_if_truncated(truncated, rows)
    return {
        "download_url": str(body["download_url"]),
        "expires_in": body.get("expires_in"),
        "format": str(body.get("format", "")),
        "rows": rows,
        "truncated": truncated,
    }
