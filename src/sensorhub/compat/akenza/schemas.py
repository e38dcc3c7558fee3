"""Akenza wire shapes: entities as assets, and Spring Data pages."""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import Field

from sensorhub.entities.models import Entity
from sensorhub.errors import BadRequest
from sensorhub.kit.time import iso
from sensorhub.schemas import StrictModel
from sensorhub.timeseries import device_data
from sensorhub.timeseries.models import DEFAULT_TOPIC, MAX_TOPIC_LENGTH
from sensorhub.timeseries.names import MAX_ATTRIBUTE_LENGTH


def asset_json(e: Entity, attrs: dict[str, Any]) -> dict[str, Any]:
    """``e`` as an Akenza asset whose ``properties`` are ``attrs`` (what the reader may see)."""
    desc = attrs.get("description", {}).get("value")
    return {
        "id": e.asset_id,
        "name": e.name or e.entity_id,
        "description": desc if isinstance(desc, str) else None,
        "type": e.type,
        "entityId": e.entity_id,
        "workspaceId": e.workspace_id,
        "organizationId": e.org_id,
        "created": e.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "updated": e.modified_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "properties": {
            k: (a.get("object") if a.get("type") == "Relationship" else a.get("value"))
            for k, a in attrs.items()
        },
        "location": e.location,
    }


def spring_page(content: list[dict[str, Any]], page: int, size: int, total: int) -> dict[str, Any]:
    sort = {"sorted": False, "unsorted": True, "empty": True}
    pages = math.ceil(total / size) if size else 0
    return {
        "content": content,
        "pageable": {
            "pageNumber": page,
            "pageSize": size,
            "offset": page * size,
            "paged": True,
            "unpaged": False,
            "sort": sort,
        },
        "totalPages": pages,
        "totalElements": total,
        "last": page >= pages - 1,
        "number": page,
        "size": size,
        "numberOfElements": len(content),
        "first": page == 0,
        "sort": sort,
        "empty": not content,
    }


# --- device data (``/v3/devices/{id}/query…``), shapes of Akenza's API and its Java client ----------


class TimestampFilter(StrictModel):
    """Akenza's ``timestamp`` filter: any of gt, gte, lt, lte (ISO 8601)."""

    gt: str | None = None
    gte: str | None = None
    lt: str | None = None
    lte: str | None = None


class DataQueryBody(StrictModel):
    timestamp: TimestampFilter | None = None
    topic: str = Field(DEFAULT_TOPIC, min_length=1, max_length=MAX_TOPIC_LENGTH)
    limit: int = Field(8000, ge=1, le=device_data.MAX_SAMPLES, description="Default 8000 (Akenza's)")
    skip: int = Field(0, ge=0, le=device_data.MAX_SKIP)
    sort: Literal["ASC", "DESC", "asc", "desc"] = Field(
        "DESC", description="By timestamp; default newest first"
    )


class Interval(StrictModel):
    from_: str = Field(alias="from", description="ISO 8601, inclusive")
    to: str = Field(description="ISO 8601, exclusive")


ACCUMULATORS = {
    "MIN": "min",
    "MAX": "max",
    "AVG": "avg",
    "SUM": "sum",
    "COUNT": "count",
    "FIRST": "first",
    "LAST": "last",
}


class AggregationBody(StrictModel):
    topic: str = Field(DEFAULT_TOPIC, min_length=1, max_length=MAX_TOPIC_LENGTH)
    dataKey: str = Field(min_length=1, max_length=MAX_ATTRIBUTE_LENGTH)
    accumulator: str = Field(description="MIN | MAX | AVG | SUM | COUNT | FIRST | LAST")
    interval: Interval
    bucketInterval: str = Field("PT1H", description="ISO 8601 duration of a bucket (time series)")

    def aggregation(self) -> str:
        agg = ACCUMULATORS.get(self.accumulator.upper())
        if agg is None:
            raise BadRequest(
                f"accumulator '{self.accumulator[:40]}' is not supported; use one of {', '.join(ACCUMULATORS)}"
            )
        return agg


_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")


def duration_us(text: str, what: str = "bucketInterval") -> int:
    """An ISO 8601 duration of days, hours, minutes and seconds (``PT1H``, ``P1D``, ``PT15M``) in µs."""
    m = _DURATION.fullmatch(text.strip().upper())
    if m is None or not any(m.groups()) or text.upper().endswith("T"):
        raise BadRequest(f"{what} '{text[:30]}' is not an ISO 8601 duration such as PT15M, PT1H or P1D")
    d, h, mi, sec = (int(g) if g else 0 for g in m.groups())
    seconds = ((d * 24 + h) * 60 + mi) * 60 + sec
    if seconds < 1:
        raise BadRequest(f"{what} must be at least one second")
    return seconds * 1_000_000


def device_data_json(device_id: str, sample: device_data.Sample) -> dict[str, Any]:
    return {
        "deviceId": device_id,
        "akenzaDeviceId": device_id,
        "topic": sample.topic,
        "timestamp": iso(sample.timestamp_us),
        "data": sample.data,
    }
