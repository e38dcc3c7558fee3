"""HTTP: InfluxDB's write endpoints, ``POST /api/v2/write`` (2.x) and ``POST /write`` (1.x).

Telegraf's ``influxdb_v2`` output, the InfluxDB client libraries and anything else that speaks line
protocol write here unmodified: ``Authorization: Token <token>`` (or ``Bearer``, or ``x-api-key``)
with the ``ingest`` scope, an optionally gzip-compressed body, ``204 No Content`` on success. The lines
are mapped onto devices, topics and attributes by :mod:`sensorhub.timeseries.lineproto` and stored by
the ingest service, all or nothing. Errors have InfluxDB's shapes (:mod:`sensorhub.api.errors`).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from sensorhub.api.deps import ctx
from sensorhub.auth.dependencies import RequireScope
from sensorhub.auth.principal import Principal
from sensorhub.db import utcnow
from sensorhub.errors import BadRequest, NotFound
from sensorhub.kit.bodies import read_body
from sensorhub.kit.time import to_us
from sensorhub.timeseries import ingest, lineproto, provisioning

router = APIRouter()
INGEST = RequireScope("ingest")
TAGS: list[str | Enum] = ["ingest"]

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/plain": {
                "schema": {"type": "string"},
                "example": "weather,device=urn:ngsi-ld:Device:station-1 temperature=21.5,humidity=40i "
                "1767225600000000000\n",
            }
        },
    },
    "responses": {
        "204": {"description": "Every line stored (or already stored: see the X-Sensorhub-* headers)"},
    },
}

OnConflict = Annotated[
    str | None,
    Query(description="ignore (default: a stored point keeps its value) | overwrite (sensorhub extension)"),
]


def _tenant(principal: Principal, org: str | None, bucket: str | None) -> str | None:
    """The tenant a write names (organisation, and workspace = bucket/db), as ``<org>[/<workspace>]``
    for :meth:`Principal.for_tenant`; a workspace named alone is looked up among the credential's."""
    if bucket is not None and "/" in bucket and org is None:
        org, _, bucket = bucket.partition("/")
    if org is not None:
        return org if bucket is None else f"{org}/{bucket}"
    if bucket is None:
        return None
    matches = [w for w in principal.workspaces.values() if bucket in (w.id, w.slug)]
    if len({w.org_id for w in matches}) > 1:
        raise BadRequest(f"the bucket '{bucket[:60]}' exists in several organisations; name one with org")
    if not matches:
        raise NotFound(f'bucket "{bucket[:60]}" not found')
    return f"{matches[0].org_id}/{matches[0].id}"


async def _write(
    request: Request,
    principal: Principal,
    tenant: str | None,
    precision: str,
    on_conflict: str | None,
) -> Response:
    context = ctx(request)
    limits = ingest.Limits.from_settings(context.settings)
    conflict = ingest.check_on_conflict(on_conflict)
    raw = await read_body(request, limits.max_body_bytes, gzip=True)
    narrowed = principal.for_tenant(tenant)
    access = narrowed.access("ingest")
    if tenant is not None and access.is_empty:
        raise NotFound(f"organization or bucket '{tenant[:80]}' not found (or not writable with this token)")
    writer = provisioning.Writer(principal.credential_id, principal.user_id, "line protocol")
    now_us = to_us(utcnow())
    tags = tuple(context.settings.line_protocol_device_tags)

    def parse() -> list[ingest.DeviceBatch]:
        writes = lineproto.parse(raw, precision, now_us, limits, tags)
        return [ingest.DeviceBatch(w.device, f"line {w.first_line}", w.prepared) for w in writes]

    result = await ingest.write_off_loop(
        context.db,
        parse,
        lambda s, batches: ingest.check_targets(s, access, batches, limits, writer),
        lambda s, batches: ingest.store_batches(s, access, batches, limits, conflict, writer),
    )
    headers = {
        "X-Sensorhub-Accepted": str(result["accepted"]),
        "X-Sensorhub-Duplicates": str(result["duplicates"]),
        "X-Sensorhub-On-Conflict": conflict,
    }
    if "overwritten" in result:
        headers["X-Sensorhub-Overwritten"] = str(result["overwritten"])
    return Response(status_code=204, headers=headers)


@router.post(
    "/api/v2/write",
    tags=TAGS,
    status_code=204,
    openapi_extra=_BODY,
    summary="Write line protocol (InfluxDB 2.x)",
)
async def write_v2(
    request: Request,
    org: Annotated[str | None, Query(description="Organisation slug or id (narrows the write)")] = None,
    bucket: Annotated[str | None, Query(description="Workspace slug or id (narrows the write)")] = None,
    precision: Annotated[str | None, Query(description="ns (default) | us | ms | s")] = None,
    on_conflict: OnConflict = None,
    principal: Principal = Depends(INGEST),
) -> Response:
    """Line protocol, one point per line (``Content-Encoding: gzip`` accepted). The device is named by
    a tag (``device``, ``entity_id`` or ``host`` by default), the attribute is ``<measurement>_<field>``
    (the measurement alone for a field ``value``), the other tags make the topic. All lines or none."""
    p = lineproto.check_precision(precision, lineproto.V2_PRECISIONS)
    return await _write(request, principal, _tenant(principal, org, bucket), p, on_conflict)


@router.post(
    "/write", tags=TAGS, status_code=204, openapi_extra=_BODY, summary="Write line protocol (InfluxDB 1.x)"
)
async def write_v1(
    request: Request,
    db: Annotated[str | None, Query(description="Workspace (slug or id), or <org>/<workspace>")] = None,
    rp: Annotated[str | None, Query(description="Retention policy: only autogen (the default)")] = None,
    precision: Annotated[str | None, Query(description="n/ns (default) | u/us | ms | s | m | h")] = None,
    on_conflict: OnConflict = None,
    principal: Principal = Depends(INGEST),
) -> Response:
    """InfluxDB 1.x's write endpoint: the same lines and mapping as ``/api/v2/write``; ``db`` names the
    workspace. Credentials go in ``Authorization: Token <token>`` (1.x ``u``/``p`` parameters and basic
    auth are not accepted: a password in a URL ends up in logs)."""
    if rp not in (None, "", "autogen"):
        raise BadRequest(f"retention policy '{rp[:40]}' does not exist; sensorhub keeps one (autogen)")
    p = lineproto.check_precision(precision, lineproto.V1_PRECISIONS)
    return await _write(request, principal, _tenant(principal, None, db), p, on_conflict)
