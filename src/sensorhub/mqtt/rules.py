"""What a credential may do over MQTT, as pure checks on its :class:`Principal`: the one set of rules
both brokers apply — the embedded one (:mod:`sensorhub.mqtt.broker`) and Mosquitto through the
sensorhub auth plugin (:mod:`sensorhub.mqtt.plugin_api`, docs/mqtt.md "Production: Mosquitto")."""

from __future__ import annotations

from datetime import datetime

import orjson

from sensorhub.auth.principal import Principal
from sensorhub.auth.restrictions import RequestFacts
from sensorhub.authz.access import Access
from sensorhub.authz.scope import US_MAX, US_MIN, readable_windows_us
from sensorhub.errors import SensorhubError
from sensorhub.kit.time import parse_iso, to_us
from sensorhub.mqtt import topics

SCOPES = frozenset({"ingest", "telemetry"})


class _Entity:
    __slots__ = ("entity_id", "org_id", "workspace_id")

    def __init__(self, org_id: str, workspace_id: str, entity_id: str) -> None:
        self.org_id, self.workspace_id, self.entity_id = org_id, workspace_id, entity_id


def connect_refusal(
    principal: Principal, ip: str, tls: bool, require_https: bool, now: datetime
) -> str | None:
    """Why this credential may not connect from ``ip`` (None: it may)."""
    if principal.is_expired(now):
        return "expired token"
    if require_https and not tls:
        return "tokens are only accepted over TLS on this server"
    facts = RequestFacts(client_ip=ip, now=now)
    if any(not r.verify(facts) for r in principal.restrictions):
        return "this credential may not be used from this client address"
    if not SCOPES & principal.scopes:
        return "the token has neither the 'ingest' nor the 'telemetry' scope"
    return None


def publish_target(principal: Principal, topic: str, now: datetime) -> tuple[topics.Target, Access] | str:
    """The target of a publish on ``topic`` and the credential's ingest access to its tenant, or why
    this credential may not publish there (the payload is checked when it is stored)."""
    if principal.is_expired(now):
        return "expired token"
    if "ingest" not in principal.scopes:
        return "the token has no 'ingest' scope"
    try:
        target = topics.parse_topic(topic)
    except SensorhubError as e:
        return e.message
    access = principal.for_tenant(target.tenant).access("ingest")
    if access.is_empty:
        return f"this token may not write to {target.tenant}"
    return target, access


def publish_refusal(principal: Principal, topic: str, now: datetime) -> str | None:
    """Why this credential may not publish on ``topic`` (None: it may): :func:`publish_target`'s
    refusal."""
    checked = publish_target(principal, topic, now)
    return checked if isinstance(checked, str) else None


def subscribe_allowed(principal: Principal, topic_filter: str) -> bool:
    """A ``telemetry`` token may subscribe to filters under ``sensorhub/`` naming no organisation it
    does not reach; what a filter receives is narrowed per value (:func:`read_allowed`)."""
    if "telemetry" not in principal.scopes or not topics.filter_reaches_root(topic_filter):
        return False
    org = topics.filter_org(topic_filter)
    return org is None or not principal.for_tenant(org).access("telemetry").is_empty


def read_allowed(principal: Principal, topic: str, payload: bytes | None, now: datetime) -> tuple[bool, bool]:
    """Whether a live value on ``topic`` (``sensorhub/{org}/{workspace}/{entity}/{attribute}``) may be
    delivered to this credential: the same grants, token restrictions and time windows as
    ``/api/devices`` and the embedded broker's live feed. Second item: whether the answer holds for any
    value of that topic (no time window cuts the entity), so a broker may cache it."""
    if principal.is_expired(now) or "telemetry" not in principal.scopes:
        return False, True
    levels = topic.split("/")
    if len(levels) < 5 or levels[0] != topics.ROOT:
        return False, True
    org = next((o for o in principal.orgs.values() if o.slug == levels[1]), None)
    ws = None
    if org is not None:
        ws = next(
            (w for w in principal.workspaces.values() if w.org_id == org.id and w.slug == levels[2]), None
        )
    if org is None or ws is None:
        return False, True
    access = principal.for_tenant(f"{org.slug}/{ws.slug}").access("telemetry")
    entity = _Entity(org.id, ws.id, levels[3])
    if not access.allows(org.id, ws.id, levels[3]):
        return False, True
    windows = readable_windows_us(access, entity)
    if windows == [(US_MIN, US_MAX)]:
        return True, True
    ts = _timestamp_us(payload)
    return ts is not None and any(lo <= ts < hi for lo, hi in windows), False


def _timestamp_us(payload: bytes | None) -> int | None:
    if not payload:
        return None
    try:
        body = orjson.loads(payload)
        return to_us(parse_iso(str(body["timestamp"]), "timestamp"))
    except Exception:
        return None
