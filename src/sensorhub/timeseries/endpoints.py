"""HTTP routes of sensorhub's own time-series API: v2 reads and telemetry (thin: parse, call one
service function, render). The seed families' routes over the same services (LEAF ``/api/data``,
Akenza backfill) live in :mod:`sensorhub.compat`.

Hot paths are ``async def``: authentication is async, the database work runs in one worker-thread hop,
and bodies are serialised with orjson straight from numpy (no ``jsonable_encoder``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.responses import Response

from sensorhub.api.deps import ctx
from sensorhub.auth.dependencies import RequireScope, RequireSession, SessionContext
from sensorhub.auth.principal import Principal
from sensorhub.authz.subjects import session_access
from sensorhub.db import utcnow
from sensorhub.kit.bodies import read_body
from sensorhub.kit.time import parse_time
from sensorhub.net import client_ip
from sensorhub.schemas import StrictModel
from sensorhub.timeseries import formats, gateway, ingest, provisioning, reads, service, telemetry
from sensorhub.timeseries.models import DEFAULT_TOPIC, MAX_TOPIC_LENGTH
from sensorhub.timeseries.names import MAX_ATTRIBUTE_LENGTH, MAX_DEVICE_REF_LENGTH
from sensorhub.timeseries.query import DEFAULT_RESOLUTION, MAX_RESOLUTION

router = APIRouter()

# Paging parameters are bounded where they are declared: a value beyond them (2**63, 1e30) is a 400
# naming the parameter, never an integer the database driver cannot bind.
PageLimit = Annotated[int, Query(ge=1, le=telemetry.LIMITS.maximum, description=telemetry.LIMITS.range_text)]
PageOffset = Annotated[
    int, Query(ge=0, le=telemetry.OFFSETS.maximum, description=f"0-{telemetry.OFFSETS.maximum}")
]


def _workspaces(p: Principal) -> dict[str, str]:
    return {w.id: w.slug for w in p.workspaces.values()}


# --- time series v2 -------------------------------------------------------------------------------


@router.get("/api/timeseries/v2/entities/{entity_id}/data", tags=["timeseries"])
async def entity_data(
    request: Request,
    entity_id: str,
    start_time: Annotated[str, Query(description="ISO 8601, inclusive (e.g. 2026-01-01T00:00:00Z)")],
    end_time: Annotated[str, Query(description="ISO 8601, exclusive")],
    attribute: Annotated[
        list[str] | None,
        Query(
            description=f"Repeatable (at most {reads.MAX_READ_ATTRIBUTES}); all numeric attributes if absent"
        ),
    ] = None,
    resolution: Annotated[
        int, Query(ge=1, le=MAX_RESOLUTION, description="At most this many points (1-100000)")
    ] = DEFAULT_RESOLUTION,
    aggregation: Annotated[str, Query(description="avg|min|max|sum|count|first|last")] = "avg",
    format: Annotated[str | None, Query(description="json|csv|arrow (overrides Accept)")] = None,
    topic: Annotated[
        str,
        Query(min_length=1, max_length=MAX_TOPIC_LENGTH, description="Data topic (Akenza); default: default"),
    ] = DEFAULT_TOPIC,
    principal: Principal = Depends(RequireScope("timeseries")),
) -> Response:
    """An entity's numeric attributes over ``[start_time, end_time)``: raw points when at most
    ``resolution`` of them fall in the range, else aggregated into the smallest standard bucket
    (1s … 7d) that fits; bucket timestamps are epoch-aligned bucket starts. ``Accept:
    application/vnd.apache.arrow.stream`` or ``text/csv`` (or ``format=``) switch the encoding."""
    media = formats.negotiate(request.headers.get("accept"), format)
    start = parse_time(start_time, "start_time")
    end = parse_time(end_time, "end_time")
    access = principal.access("timeseries")
    frame = await ctx(request).db.read_off_loop(
        lambda s: reads.entity_data(
            s, access, entity_id, start, end, attribute, resolution, aggregation, topic
        ),
    )
    if media == formats.JSON:
        return formats.json_response(formats.entity_body(frame))
    return formats.render(frame, media)


class SeriesSpec(StrictModel):
    entity_id: str = Field(
        description="Entity id (or asset id)", min_length=1, max_length=MAX_DEVICE_REF_LENGTH
    )
    attribute: str = Field(min_length=1, max_length=MAX_ATTRIBUTE_LENGTH)
    aggregation: Literal["avg", "min", "max", "sum", "count", "first", "last"] | None = None
    topic: str = Field(
        DEFAULT_TOPIC,
        min_length=1,
        max_length=MAX_TOPIC_LENGTH,
        description="Data topic (Akenza); off the default topic the series is keyed <entity_id>.<attribute>@<topic>",
    )


class QueryBody(StrictModel):
    start_time: str = Field(description="ISO 8601, inclusive")
    end_time: str = Field(description="ISO 8601, exclusive")
    resolution: int = Field(
        DEFAULT_RESOLUTION, ge=1, le=MAX_RESOLUTION, description="At most this many points (1-100000)"
    )
    series: list[SeriesSpec] = Field(min_length=1, max_length=reads.MAX_QUERY_SERIES)
    aggregation: Literal["avg", "min", "max", "sum", "count", "first", "last"] = "avg"
    fill: Literal["previous"] | None = None


@router.post("/api/timeseries/v2/query", tags=["timeseries"])
async def query(
    body: QueryBody,
    request: Request,
    format: Annotated[str | None, Query(description="json|csv|arrow (overrides Accept)")] = None,
    principal: Principal = Depends(RequireScope("timeseries")),
) -> Response:
    """Several series on one aligned time axis, keyed by ``<entity_id>.<attribute>`` (for PowerBI,
    Tableau, notebooks). ``fill: "previous"`` carries values forward over gaps."""
    media = formats.negotiate(request.headers.get("accept"), format)
    start = parse_time(body.start_time, "start_time")
    end = parse_time(body.end_time, "end_time")
    refs = [reads.SeriesRef(x.entity_id, x.attribute, x.aggregation, x.topic) for x in body.series]
    access = principal.access("timeseries")
    frame = await ctx(request).db.read_off_loop(
        lambda s: reads.query(s, access, start, end, body.resolution, refs, body.aggregation, body.fill),
    )
    if media == formats.JSON:
        return formats.json_response(formats.query_body(frame))
    return formats.render(frame, media)


# --- telemetry ---------------------------------------------------------------------------------------


@router.get("/api/devices", tags=["telemetry"])
async def list_devices(
    request: Request,
    type: str | None = None,
    limit: PageLimit = telemetry.LIMITS.default,
    offset: PageOffset = 0,
    principal: Principal = Depends(RequireScope("telemetry")),
) -> Response:
    """Devices (entities with time series) visible to the credential, with their latest values."""
    access = principal.access("telemetry")
    ws = _workspaces(principal)
    rows = await ctx(request).db.read_off_loop(
        lambda s: telemetry.list_devices(s, access, ws, type, limit, offset)
    )
    return formats.json_response(rows)


@router.get("/api/devices/{device_id}", tags=["telemetry"])
async def get_device(
    device_id: str, request: Request, principal: Principal = Depends(RequireScope("telemetry"))
) -> Response:
    access = principal.access("telemetry")
    ws = _workspaces(principal)
    return formats.json_response(
        await ctx(request).db.read_off_loop(lambda s: telemetry.get_device(s, access, ws, device_id))
    )


@router.get("/api/sensors", tags=["telemetry"])
async def list_sensors(
    request: Request,
    limit: PageLimit = telemetry.LIMITS.default,
    offset: PageOffset = 0,
    principal: Principal = Depends(RequireScope("telemetry")),
) -> Response:
    """One row per series ``{id: "<entity_id>.<attribute>", entity_id, attribute, value, unit, observedAt}``."""
    access = principal.access("telemetry")
    return formats.json_response(
        await ctx(request).db.read_off_loop(lambda s: telemetry.list_sensors(s, access, limit, offset))
    )


@router.get("/api/sensors/{sensor_id}", tags=["telemetry"])
async def get_sensor(
    sensor_id: str, request: Request, principal: Principal = Depends(RequireScope("telemetry"))
) -> Response:
    access = principal.access("telemetry")
    return formats.json_response(
        await ctx(request).db.read_off_loop(lambda s: telemetry.get_sensor(s, access, sensor_id))
    )


# --- gateway ingest ----------------------------------------------------------------------------------

_GATEWAY_RECORD = {
    "type": "object",
    "required": ["device", "data"],
    "properties": {
        "device": {"type": "string", "description": "Entity id or asset id"},
        "timestamp": {"type": "string", "format": "date-time", "description": "Default: now"},
        "topic": {"type": "string", "default": "default"},
        "data": {"type": "object", "additionalProperties": True},
    },
}
_GATEWAY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": _GATEWAY_RECORD},
                "example": [
                    {
                        "device": "urn:ngsi-ld:Device:a",
                        "timestamp": "2026-01-01T00:00:00Z",
                        "data": {"t": 21.5},
                    },
                    {"device": "urn:ngsi-ld:Device:b", "topic": "env", "data": {"t": 19.0}},
                ],
            }
        },
    }
}


@router.post("/api/gateway/ingest", tags=["ingest"], openapi_extra=_GATEWAY_BODY)
async def gateway_ingest(
    request: Request,
    on_conflict: Annotated[
        str | None, Query(description="ignore (default: a stored point keeps its value) | overwrite")
    ] = None,
    principal: Principal = Depends(RequireScope("ingest")),
) -> Response:
    """Records of many devices in one request (a gateway's buffer): ``[{device, timestamp?, topic?,
    data}]``, each as an Akenza backfill record of that device. All or nothing: if any record is
    refused, nothing is stored and ``errors`` lists every refused record by ``index``. Returns
    ``{accepted, duplicates, devices}``."""
    context = ctx(request)
    limits = ingest.Limits.from_settings(context.settings)
    conflict = ingest.check_on_conflict(on_conflict)
    raw = await read_body(request, limits.max_body_bytes, gzip=True)
    access = principal.access("ingest")
    writer = provisioning.Writer(principal.credential_id, principal.user_id, "gateway")
    now = utcnow()

    def store(s: Session, groups: list[gateway.Group]) -> dict[str, int]:
        result = ingest.store_batches(s, access, gateway.batches(groups), limits, conflict, writer)
        return {**result, "devices": len(groups)}

    result = await ingest.write_off_loop(
        context.db,
        lambda: gateway.prepare(raw, now, limits),
        lambda s, groups: gateway.check_targets(s, access, groups, limits, writer),
        store,
    )
    return formats.json_response(result, headers={"X-Sensorhub-On-Conflict": conflict})


# --- corrections -------------------------------------------------------------------------------------


@router.delete("/api/orgs/{org}/entities/{entity_id}/data", tags=["ingest"])
def delete_data(
    request: Request,
    org: str,
    entity_id: str,
    attribute: Annotated[str, Query(min_length=1, max_length=MAX_ATTRIBUTE_LENGTH)],
    start_time: Annotated[str, Query(description="ISO 8601, inclusive")],
    end_time: Annotated[str, Query(description="ISO 8601, exclusive")],
    topic: Annotated[str, Query(min_length=1, max_length=MAX_TOPIC_LENGTH)] = DEFAULT_TOPIC,
    sc: SessionContext = Depends(RequireSession(org_admin=True)),
) -> Response:
    """Delete the points of one series in ``[start_time, end_time)`` (owners and admins of the
    organisation, in a session; audited as ``timeseries.delete_range``). Rollups are rebuilt for the
    buckets the range touches, so aggregated reads stay exact. Returns what was deleted."""
    assert sc.org is not None
    access = session_access(sc.db, sc.user).for_orgs([sc.org.id])
    result = service.delete_series_range(
        sc.db,
        access,
        entity_id,
        attribute,
        topic,
        parse_time(start_time, "start_time"),
        parse_time(end_time, "end_time"),
        actor_user_id=sc.user.id,
        ip=client_ip(request, tuple(ctx(request).settings.trusted_proxies)),
    )
    return formats.json_response(result)
