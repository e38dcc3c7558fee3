"""HTTP: NGSI-LD subscriptions (``/ngsi-ld/v1/subscriptions``), owned by the token that made them.

A token with the ``entities`` scope may create one (it is a standing read); it lists, reads, changes and
deletes only its own. Bodies are checked by :mod:`sensorhub.compat.ngsi_ld.subscription_schemas`;
storage, matching and notifications are :mod:`sensorhub.push.subscriptions`. Errors are ETSI
ProblemDetails (the one error handler, by path).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from sensorhub.api.deps import ctx, get_db
from sensorhub.auth.dependencies import RequireScope
from sensorhub.auth.principal import Principal
from sensorhub.compat.ngsi_ld.schemas import wants_ld
from sensorhub.compat.ngsi_ld.subscription_schemas import (
    check_link_contexts,
    merge_fragment,
    parse_subscription,
)
from sensorhub.db import utcnow
from sensorhub.entities.normalize import CONTEXT_LINK
from sensorhub.errors import BadRequest
from sensorhub.push import ngsi_mqtt
from sensorhub.push import subscriptions as subs
from sensorhub.push.ssrf import check_url
from sensorhub.push.subscription_target import delivery_stats

router = APIRouter()
PATH = "/ngsi-ld/v1/subscriptions"
ENTITIES = RequireScope("entities")
TAGS: list[str | Enum] = ["NGSI-LD subscriptions"]
DEFAULT_LIMIT, MAX_LIMIT = 100, 500

EXAMPLE = {
    "type": "Subscription",
    "entities": [{"type": "WeatherObserved"}],
    "watchedAttributes": ["temperature"],
    "q": "temperature>30",
    "notification": {
        "format": "keyValues",
        "attributes": ["temperature"],
        "endpoint": {"uri": "https://example.org/notify", "accept": "application/json"},
    },
}

CREATE_DOC = """
An NGSI-LD `Subscription` (ETSI GS CIM 009 V1.8): `entities` (type, and id or idPattern) and/or
`watchedAttributes`, `q`, `notification` (`attributes`, `format` normalized/keyValues/concise,
`endpoint.uri` http(s), `endpoint.accept`), `throttling` (seconds), `timeInterval` (seconds, periodic
notifications with the current values), `geoQ`, `expiresAt`, `isActive`,
`subscriptionName`, `description`. Members not implemented (`temporalQ`,
`scopeQ`, `csf`, `lang`, `notificationTrigger`, `notification.sysAttrs`/`showChanges`,
`endpoint.receiverInfo`) are refused with a 400 naming them. `mqtt://`/`mqtts://` endpoints
(`notifierInfo` `MQTT-Version`, `MQTT-QoS`) get the Notification published (the NGSI-LD MQTT binding).

Notifications are POSTed as `{id, type: "Notification", subscriptionId, notifiedAt, data: [entity]}`,
through the delivery queue (retries, `Idempotency-Key`), read with the token's **current** access: once
it is revoked no further notification is sent. A 410 from the endpoint pauses the subscription.
"""


def _endpoint_check(request: Request) -> Callable[[str], None]:
    """The endpoint must be reachable for connectors (SSRF: no loopback, private or link-local address
    unless the operator allows them); the delivery queue checks it again before every attempt."""
    allow = ctx(request).settings.push_allow_private_targets

    def check(uri: str) -> None:
        if ngsi_mqtt.is_mqtt(uri):
            ngsi_mqtt.check_target(uri, allow)
        else:
            check_url(uri, allow, ("https", "http"), "notification.endpoint.uri")

    return check


def _json(body: Any, ld: bool, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    h = dict(headers or {})
    if not ld:
        h["Link"] = CONTEXT_LINK
    return Response(
        orjson.dumps(body),
        status_code=status,
        headers=h,
        media_type="application/ld+json" if ld else "application/json",
    )


@router.post(PATH, tags=TAGS, status_code=201, summary="Create a subscription", description=CREATE_DOC)
def create_subscription(
    request: Request,
    body: Any = Body(..., examples=[EXAMPLE]),
    link: str | None = Header(None, description="Only the NGSI-LD core @context is understood"),
    principal: Principal = Depends(ENTITIES),
    db: Session = Depends(get_db),
) -> Response:
    check_link_contexts(link)
    sub_id, spec = parse_subscription(body, utcnow())
    spec = ngsi_mqtt.seal(spec, ctx(request).settings)
    sub = subs.create(db, principal, sub_id, spec, _endpoint_check(request))
    return Response(status_code=201, headers={"Location": f"{PATH}/{quote(sub.sub_id, safe=':')}"})


@router.get(PATH, tags=TAGS, summary="List this token's subscriptions")
def list_subscriptions(
    limit: int | None = Query(None, description=f"Page size; default {DEFAULT_LIMIT}, at most {MAX_LIMIT}"),
    offset: int = Query(0, ge=0, le=1_000_000),
    count: bool = Query(False, description="Send the total as NGSILD-Results-Count"),
    accept: str | None = Header(None),
    principal: Principal = Depends(ENTITIES),
    db: Session = Depends(get_db),
) -> Response:
    ld = wants_ld(accept)
    lim = DEFAULT_LIMIT if limit is None else limit
    if lim < 1 or lim > MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    rows, total = subs.owned(db, principal, lim, offset)
    now = utcnow()
    headers = {"NGSILD-Results-Count": str(total)} if count else {}
    return _json([subs.to_json(r, delivery_stats(db, r), now, context=ld) for r in rows], ld, headers=headers)


@router.get(f"{PATH}/{{subscription_id}}", tags=TAGS, summary="Retrieve a subscription")
def get_subscription(
    subscription_id: str,
    accept: str | None = Header(None),
    principal: Principal = Depends(ENTITIES),
    db: Session = Depends(get_db),
) -> Response:
    ld = wants_ld(accept)
    sub = subs.get(db, principal, subscription_id)
    return _json(subs.to_json(sub, delivery_stats(db, sub), utcnow(), context=ld), ld)


@router.patch(
    f"{PATH}/{{subscription_id}}",
    tags=TAGS,
    status_code=204,
    summary="Update a subscription",
    description="A fragment of Subscription members; each replaces the stored one (the result is "
    "checked as a whole, with the same rules as on creation).",
)
def update_subscription(
    request: Request,
    subscription_id: str,
    body: Any = Body(..., examples=[{"isActive": False}]),
    link: str | None = Header(None, description="Only the NGSI-LD core @context is understood"),
    principal: Principal = Depends(ENTITIES),
    db: Session = Depends(get_db),
) -> Response:
    check_link_contexts(link)
    sub = subs.get(db, principal, subscription_id)
    spec = ngsi_mqtt.seal(merge_fragment(sub.spec, body, utcnow()), ctx(request).settings, sub.spec)
    subs.update(db, principal, subscription_id, spec, _endpoint_check(request))
    return Response(status_code=204)


@router.delete(f"{PATH}/{{subscription_id}}", tags=TAGS, status_code=204, summary="Delete a subscription")
def delete_subscription(
    subscription_id: str,
    principal: Principal = Depends(ENTITIES),
    db: Session = Depends(get_db),
) -> Response:
    subs.delete(db, principal, subscription_id)
    return Response(status_code=204)
