"""Optional pandas/pyarrow support: imports with install hints, and DataFrame builders."""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def has_pandas() -> bool:
    return has_module("pandas")


def has_arrow() -> bool:
    return has_module("pyarrow")


def require_pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError("this needs pandas: pip install 'sensorhub-client[pandas]'") from None
    return pandas


def require_arrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise ImportError("this needs pyarrow: pip install 'sensorhub-client[arrow]'") from None
    return pyarrow


def utc_index(values: Any, name: str = "timestamp") -> pd.DatetimeIndex:
    """A UTC DatetimeIndex at microsecond resolution, the same for JSON and Arrow answers."""
    pd = require_pandas()
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="ISO8601"))
    return index.as_unit("us").rename(name)


def wide_frame(
    timestamps: Sequence[Any], columns: Mapping[str, Sequence[float | None]], attrs: Mapping[str, Any]
) -> pd.DataFrame:
    """One float64 column per series on a UTC ``timestamp`` index."""
    pd = require_pandas()
    import numpy as np

    index = utc_index(list(timestamps))
    data = {name: np.asarray(values, dtype="float64") for name, values in columns.items()}
    frame = pd.DataFrame(data, index=index, columns=list(columns))
    frame.attrs.update(attrs)
    return frame


def arrow_frame(payload: bytes, attrs: Mapping[str, Any]) -> pd.DataFrame:
    """Read an Arrow IPC stream (``timestamp`` + float64 columns) into the same frame as JSON gives."""
    pa = require_arrow()
    require_pandas()
    table = pa.ipc.open_stream(payload).read_all()
    schema_meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    # Units travel as schema metadata ``units`` (a JSON object) or as per-field ``unit`` metadata.
    units: dict[str, Any] = {}
    if schema_meta.get("units"):
        units.update(json.loads(schema_meta["units"]))
    for field in table.schema:
        meta = field.metadata or {}
        if b"unit" in meta:
            units[field.name] = meta[b"unit"].decode()
    frame = table.to_pandas()
    stamps = frame.pop("timestamp")
    if getattr(stamps.dt, "tz", None) is None:
        stamps = stamps.dt.tz_localize("UTC")
    frame.index = utc_index(stamps)
    frame = frame.astype("float64")
    frame.attrs.update(attrs)
    bucket = schema_meta.get("bucket_seconds")
    frame.attrs["bucket_seconds"] = int(bucket) if bucket else None
    frame.attrs["aggregation"] = schema_meta.get("aggregation") or None
    if units:
        frame.attrs["units"] = units
    return frame


def rows_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """LEAF rows ``{time, entity, metric, value, tags}`` as a long frame with a ``unit`` column."""
    pd = require_pandas()
    frame = pd.DataFrame(
        {
            "time": utc_index([r.get("time") for r in rows], name="time"),
            "entity": pd.Series([r.get("entity") for r in rows], dtype="object"),
            "metric": pd.Series([r.get("metric") for r in rows], dtype="object"),
            "value": pd.Series([r.get("value") for r in rows], dtype="float64"),
            "unit": pd.Series([(r.get("tags") or {}).get("unit") for r in rows], dtype="object"),
            "tags": pd.Series([r.get("tags") or {} for r in rows], dtype="object"),
        }
    )
    return frame


def file_frame(payload: bytes, fmt: str) -> pd.DataFrame:
    """Read a downloaded export (Parquet or CSV); time columns come back as UTC datetimes."""
    pd = require_pandas()
    if fmt == "parquet":
        require_arrow()
        import pyarrow.parquet as pq

        frame = pq.read_table(io.BytesIO(payload)).to_pandas()
    elif fmt == "csv":
        frame = pd.read_csv(io.BytesIO(payload))
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    for column in ("timestamp", "time"):
        if column in frame.columns:
            frame[column] = utc_index(frame[column], name=column)
    return frame
