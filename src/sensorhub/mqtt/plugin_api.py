"""The HTTP endpoints the sensorhub Mosquitto plugin (``mosquitto-plugin/sensorhub_auth.c``) asks:
``/internal/mqtt/auth`` (CONNECT), ``/internal/mqtt/acl`` (publish, subscribe, delivery) and
``/internal/mqtt/recheck`` (which connected clients to disconnect after a credential changed) and
``/internal/mqtt/ingest`` (store a QoS 1 or 2 message before Mosquitto acknowledges it). Each runs the
rules of :mod:`sensorhub.mqtt.rules` — the same the embedded broker applies — on the credential the
client connected with. Only the plugin calls them: ``Authorization: Bearer
<SENSORHUB_MQTT_PLUGIN_SECRET>``; without that setting they do not exist (404)."""

from __future__ import annotations

import hmac
import logging
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from sensorhub.api.deps import ctx, request_ip
from sensorhub.auth.dependencies import Public
from sensorhub.auth.principal import Principal
from sensorhub.context import AppContext
from sensorhub.db import utcnow
from sensorhub.errors import NotFound, ServiceUnavailable, Unauthorized
from sensorhub.mqtt import rules
from sensorhub.mqtt.broker import Refused, StoreFailed
from sensorhub.mqtt.relayed import RelayedMessages
from sensorhub.schemas import StrictModel

log = logging.getLogger("sensorhub.mqtt")
router = APIRouter(include_in_schema=False)


class AuthQuestion(StrictModel):
    username: str = Field(max_length=4096)
    password: str = Field(max_length=4096)
    clientid: str = Field("", max_length=65535)
    address: str = Field("", max_length=100)


class AclQuestion(StrictModel):
    username: str = Field(max_length=4096)
    clientid: str = Field("", max_length=65535)
    address: str = Field("", max_length=100)
    topic: str = Field(max_length=65535)
    access: Literal["read", "write", "subscribe", "other"]
    payload: str | None = Field(None, max_length=65536)


class ConnectedClient(StrictModel):
    clientid: str = Field(max_length=65535)
    username: str = Field(max_length=4096)
    address: str = Field("", max_length=100)


class RecheckQuestion(StrictModel):
    clients: list[ConnectedClient] = Field(max_length=1_000_000)


def _plugin(request: Request) -> AppContext:
    """The app context, for the plugin only (its shared secret)."""
    c = ctx(request)
    secret = c.settings.mqtt_plugin_secret
    if not secret:
        raise NotFound("Not found")
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {secret}".encode()):
        log.warning("mqtt plugin request with a wrong secret from %s", request_ip(request))
        raise Unauthorized("the Mosquitto plugin's secret (SENSORHUB_MQTT_PLUGIN_SECRET) is wrong")
    return c


# Mosquitto itself decides which listener (TCP or TLS) a client uses: with SENSORHUB_REQUIRE_HTTPS=1 its
# configuration must offer TLS listeners only (docs/mqtt.md), so a client reaching the plugin counts as TLS.
_TLS = True


async def _credential(
    c: AppContext, username: str, password: str, address: str
) -> tuple[Principal | None, str]:
    if not password or username != password:
        return None, "username and password must both be the token"
    principal = await c.auth.principal_of(password)
    if principal is None:
        return None, "invalid, expired or revoked token"
    problem = rules.connect_refusal(principal, address, _TLS, c.settings.require_https, utcnow())
    return (None, problem) if problem is not None else (principal, "")


@router.post("/internal/mqtt/auth", dependencies=[Depends(Public())])
async def mqtt_auth(body: AuthQuestion, c: AppContext = Depends(_plugin)) -> dict[str, Any]:
    """May this client connect? Refusals are logged (never the token) and count against the address's
    failed-authentication budget, as on the embedded broker."""
    principal, problem = await _credential(c, body.username, body.password, body.address)
    if principal is None:
        c.auth.failures["mqtt_connect_refused"] += 1
        c.auth.count_failure(body.address, body.password)
        log.warning(
            "mqtt connect refused (mosquitto): client=%r ip=%s reason=%s",
            body.clientid[:64],
            body.address,
            problem,
        )
        return {"allow": False, "reason": problem}
    log.info(
        "mqtt client connected (mosquitto): client=%s credential=%s ip=%s",
        body.clientid[:64],
        principal.credential_id,
        body.address,
    )
    expires = principal.expires_at.timestamp() if principal.expires_at is not None else None
    return {"allow": True, "credential": principal.credential_id, "expires": expires}


@router.post("/internal/mqtt/acl", dependencies=[Depends(Public())])
async def mqtt_acl(body: AclQuestion, c: AppContext = Depends(_plugin)) -> dict[str, Any]:
    """May this client publish on / subscribe to / receive ``topic``? ``cache_seconds``: how long the
    plugin may reuse the answer for this client and topic (0: ask again next time)."""
    principal, problem = await _credential(c, body.username, body.username, body.address)
    keep = c.settings.mqtt_acl_cache_seconds
    now = utcnow()
    allow, cacheable = False, True
    if principal is not None:
        if body.access == "write":
            problem = rules.publish_refusal(principal, body.topic, now) or ""
            allow = not problem
        elif body.access == "subscribe":
            allow = rules.subscribe_allowed(principal, body.topic)
            problem = "" if allow else "subscription outside what the token may read"
        elif body.access == "read":
            payload = body.payload.encode() if body.payload is not None else None
            allow, cacheable = rules.read_allowed(principal, body.topic, payload, now)
    if not allow and body.access in ("write", "subscribe"):
        log.info(
            "mqtt %s refused (mosquitto): client=%s credential=%s topic=%r reason=%s",
            "publish" if body.access == "write" else "subscription",
            body.clientid[:64],
            principal.credential_id if principal is not None else "-",
            body.topic[:200],
            problem or "not allowed",
        )
    return {"allow": allow, "cache_seconds": keep if cacheable else 0}


@router.post("/internal/mqtt/recheck", dependencies=[Depends(Public())])
async def mqtt_recheck(body: RecheckQuestion, c: AppContext = Depends(_plugin)) -> dict[str, Any]:
    """Which of the connected clients sensorhub no longer accepts (revoked, expired, owner disabled,
    restrictions no longer met, neither scope left): the plugin disconnects them."""
    kick: list[str] = []
    for client in body.clients:
        principal, problem = await _credential(c, client.username, client.username, client.address)
        if principal is None:
            log.warning("mqtt session closed (mosquitto): client=%s reason=%s", client.clientid[:64], problem)
            kick.append(client.clientid)
    return {"kick": kick}


def relayed_messages(request: Request, c: AppContext = Depends(_plugin)) -> RelayedMessages:
    """The server's one :class:`RelayedMessages`, for the plugin only (stopped with the app, see
    ``create_app``)."""
    state = request.app.state
    if getattr(state, "mqtt_relayed", None) is None:
        state.mqtt_relayed = RelayedMessages(c)
    relayed: RelayedMessages = state.mqtt_relayed
    return relayed


LATEST_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z


@router.post("/internal/mqtt/ingest", dependencies=[Depends(Public())])
async def mqtt_ingest(
    request: Request,
    credential: str = Query(min_length=1, max_length=100),
    received_us: int = Query(ge=0, le=LATEST_US),
    topic: str = Query(max_length=65535),
    clientid: str = Query("", max_length=65535),
    relayed: RelayedMessages = Depends(relayed_messages),
) -> dict[str, Any]:
    """Store one QoS 1 or 2 message (the request body is its payload) before Mosquitto acknowledges it:
    the same ingest as the bridge's (:class:`RelayedMessages`). ``stored: false`` (with the reason)
    means refused for good, nothing stored: Mosquitto refuses the message. A database failure answers
    503, which the plugin treats as refused too: the device has no PUBACK and sends the message again."""
    payload = await request.body()
    try:
        await relayed.store(credential, received_us, topic, payload)
    except StoreFailed as e:
        raise ServiceUnavailable(e.message) from None
    except Refused as e:
        log.warning(
            "mqtt publish refused, nothing stored; not acknowledged: client=%s credential=%s topic=%r "
            "reason=%s",
            clientid[:64],
            credential,
            topic[:200],
            e,
        )
        return {"stored": False, "reason": str(e)[:200]}
    return {"stored": True}
