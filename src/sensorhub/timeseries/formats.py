"""Rendering read results: JSON (orjson, straight from numpy), Arrow IPC stream, CSV."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
from starlette.responses import Response

from sensorhub.errors import BadRequest
from sensorhub.kit.time import iso, iso_array
from sensorhub.timeseries.reads import Frame

ARROW = "application/vnd.apache.arrow.stream"
CSV = "text/csv"
JSON = "application/json"
FORMATS = {"json": JSON, "arrow": ARROW, "csv": CSV}


def negotiate(accept: str | None, fmt: str | None) -> str:
    """``format=`` wins over ``Accept``; JSON unless Arrow or CSV is asked for."""
    if fmt:
        try:
            return FORMATS[fmt.lower()]
        except KeyError:
            raise BadRequest(f"unknown format '{fmt}'; use json, csv or arrow") from None
    if accept:
        a = accept.lower()
        if ARROW in a:
            return ARROW
        if CSV in a:
            return CSV
    return JSON


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )


def _arrow_table(frame: Frame) -> pa.Table:
    arrays: list[pa.Array] = [
        pa.array(frame.timestamps.astype("datetime64[us]"), type=pa.timestamp("us", tz="UTC"))
    ]
    names = ["timestamp"]
    for c in frame.columns:
        arrays.append(pa.array(c.values, type=pa.float64(), mask=np.isnan(c.values)))
        names.append(c.name)
    return pa.Table.from_arrays(arrays, names=names)


def arrow_bytes(frame: Frame) -> bytes:
    table = _arrow_table(frame)
    sink = pa.BufferOutputStream()
    meta = {
        b"bucket_seconds": b"" if frame.bucket_us is None else str(frame.bucket_us // 1_000_000).encode(),
        b"units": orjson.dumps({c.name: c.unit for c in frame.columns}),
    }
    with pa.ipc.new_stream(sink, table.schema.with_metadata(meta)) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def csv_bytes(frame: Frame) -> bytes:
    arrays: list[pa.Array] = [pa.array(iso_array(frame.timestamps).tolist(), type=pa.string())]
    names = ["timestamp"]
    for c in frame.columns:
        arrays.append(pa.array(c.values, type=pa.float64(), mask=np.isnan(c.values)))
        names.append(c.name)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(
        pa.Table.from_arrays(arrays, names=names), sink, pacsv.WriteOptions(quoting_style="needed")
    )
    return bytes(sink.getvalue().to_pybytes())


def render(frame: Frame, media_type: str) -> Response:
    """Arrow or CSV rendering of a frame (JSON bodies differ per route and are built there)."""
    if media_type == ARROW:
        return Response(arrow_bytes(frame), media_type=ARROW)
    return Response(csv_bytes(frame), media_type="text/csv; charset=utf-8")


def entity_body(frame: Frame) -> dict[str, Any]:
    return {
        "entity_id": frame.entity_id,
        "start_time": iso(frame.start_us),
        "end_time": iso(frame.end_us),
        "bucket_seconds": None if frame.bucket_us is None else frame.bucket_us // 1_000_000,
        "aggregation": frame.aggregation,
        "timestamps": iso_array(frame.timestamps).tolist(),
        "attributes": {c.name: c.values for c in frame.columns},
        "units": {c.name: c.unit for c in frame.columns},
    }


def query_body(frame: Frame) -> dict[str, Any]:
    return {
        "start_time": iso(frame.start_us),
        "end_time": iso(frame.end_us),
        "bucket_seconds": None if frame.bucket_us is None else frame.bucket_us // 1_000_000,
        "timestamps": iso_array(frame.timestamps).tolist(),
        "series": {
            c.name: {
                "entity_id": c.entity_id,
                "attribute": c.attribute,
                "unit": c.unit,
                "aggregation": c.aggregation,
                "values": c.values,
            }
            for c in frame.columns
        },
    }
