"""NGSI-LD subscriptions: a standing read, owned by the credential that made it.

**Owner.** A subscription is made with a token holding the ``entities`` scope (a read token may make one)
and belongs to that credential: only it lists, reads, changes or deletes it. Whatever it notifies is
read with the credential's **current** access (:func:`sensorhub.auth.resolve.resolve_id`, narrowed to
the ``NGSILD-Tenant`` it was made under), checked when the notification is *sent*: once the token is
revoked, expires or its owner loses the grant, nothing more of what it can no longer see leaves.

**Matching** (:func:`matching`). An event (the points one request stored for one attribute,
:mod:`sensorhub.push.events`) matches an active, unexpired subscription when its entity matches one of
``entities`` (type, and id or idPattern), its attribute is one of ``watchedAttributes`` (when given),
``q`` holds on the entity as the owner may read it with the new value, and the owner may read the
value (entity and time windows). ``throttling``: at most one notification per period; values arriving
meanwhile are not notified separately (the next notification carries the entity as it is then).

**Notifications** (:func:`notification`) are the spec's ``Notification``: ``{id, type: "Notification",
subscriptionId, notifiedAt, data: [entity]}``, the entity in the subscription's ``format`` (normalized,
keyValues or concise) with ``notification.attributes`` (or all), the new value as an attribute with its
``observedAt`` and ``unitCode``. They are POSTed through the push delivery queue (target kind
``ngsi_ld_subscription``: retries, idempotency key, delivery log, SSRF check); an endpoint answering
410 Gone turns the subscription off (``status: paused``, reason shown).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub.auth.principal import Principal
from sensorhub.auth.resolve import Rejected, resolve_id
from sensorhub.authz.access import Access
from sensorhub.authz.entities import visible_entity
from sensorhub.authz.scope import ReadableWindows
from sensorhub.config import Settings
from sensorhub.entities.geo import entity_geometry, parse_geo_query
from sensorhub.entities.models import Entity
from sensorhub.entities.normalize import CORE_CONTEXT, render
from sensorhub.entities.qlang import ANY_KEY, BoolOp, Comparison, Linked, Node, parse_q, roots_of
from sensorhub.entities.service import EntityQuery, entity_attrs, make_selector, query_entities
from sensorhub.errors import BadRequest, Conflict, NotFound
from sensorhub.kit.patterns import sqlite_regexp
from sensorhub.kit.time import iso
from sensorhub.push import ngsi_mqtt
from sensorhub.push.live import LiveEvent, visible_points
from sensorhub.push.subscription_models import TARGET_KIND as TARGET_KIND
from sensorhub.push.subscription_models import NgsiSubscription
from sensorhub.timeseries.models import DEFAULT_TOPIC, Series

SCOPE = "entities"
MAX_PER_CREDENTIAL = 1000


def new_subscription_id() -> str:
    return f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"


# --- CRUD (the owner's) -------------------------------------------------------------------------------


def _columns(sub: NgsiSubscription, spec: dict[str, Any]) -> None:
    sub.spec = spec
    sub.is_active = bool(spec.get("isActive", True))
    exp = spec.get("expiresAt")
    sub.expires_at = datetime.fromisoformat(exp.replace("Z", "+00:00")) if exp else None
    sub.throttling = spec.get("throttling")
    if sub.is_active:
        sub.disabled_reason = None


def create(
    s: Session,
    principal: Principal,
    sub_id: str | None,
    spec: dict[str, Any],
    check_target: Callable[[str], None],
) -> NgsiSubscription:
    """Store a checked subscription spec for ``principal`` (``check_target(uri)``: the SSRF check)."""
    if principal.access(SCOPE).is_empty:
        raise BadRequest("this token reads no entities: a subscription would never notify anything")
    check_target(spec["notification"]["endpoint"]["uri"])
    owned = s.scalars(
        select(NgsiSubscription.sub_id).where(NgsiSubscription.credential_id == principal.credential_id)
    ).all()
    sub_id = sub_id or new_subscription_id()
    if sub_id in owned:
        raise Conflict(f"a subscription with id {sub_id} already exists")
    if len(owned) >= MAX_PER_CREDENTIAL:
        raise BadRequest(f"a token may own at most {MAX_PER_CREDENTIAL} subscriptions: delete one first")
    sub = NgsiSubscription(sub_id=sub_id, credential_id=principal.credential_id, tenant=principal.tenant)
    _columns(sub, spec)
    s.add(sub)
    s.flush()
    return sub


def owned(s: Session, principal: Principal, limit: int, offset: int) -> tuple[list[NgsiSubscription], int]:
    where = NgsiSubscription.credential_id == principal.credential_id
    rows = list(
        s.scalars(
            select(NgsiSubscription).where(where).order_by(NgsiSubscription.pk).offset(offset).limit(limit)
        )
    )
    total = len(s.scalars(select(NgsiSubscription.pk).where(where)).all())
    return rows, total


def get(s: Session, principal: Principal, sub_id: str) -> NgsiSubscription:
    sub = s.scalar(
        select(NgsiSubscription).where(
            NgsiSubscription.credential_id == principal.credential_id, NgsiSubscription.sub_id == sub_id
        )
    )
    if sub is None:
        raise NotFound(f"no subscription {sub_id}")
    return sub


def update(
    s: Session, principal: Principal, sub_id: str, spec: dict[str, Any], check_target: Callable[[str], None]
) -> NgsiSubscription:
    sub = get(s, principal, sub_id)
    check_target(spec["notification"]["endpoint"]["uri"])
    _columns(sub, spec)
    s.flush()
    return sub


def delete(s: Session, principal: Principal, sub_id: str) -> None:
    s.delete(get(s, principal, sub_id))
    s.flush()


def status(sub: NgsiSubscription, now: datetime) -> str:
    """``active``, ``paused`` (isActive false, or turned off by the server) or ``expired``."""
    if sub.expires_at is not None and sub.expires_at <= now:
        return "expired"
    return "active" if sub.is_active else "paused"


def _dt(v: datetime | None) -> str | None:
    return None if v is None else v.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_json(sub: NgsiSubscription, st: dict[str, Any], now: datetime, *, context: bool) -> dict[str, Any]:
    """The subscription as the spec's Subscription data type, with its status members (``st``: counts
    and times from the delivery log, :func:`sensorhub.push.subscription_target.delivery_stats`)."""
    spec = dict(sub.spec)
    notification = dict(spec.pop("notification"))
    notification["endpoint"] = ngsi_mqtt.shown(notification["endpoint"])
    out: dict[str, Any] = {"id": sub.sub_id, "type": "Subscription", **spec}
    out["isActive"] = sub.is_active
    out["status"] = status(sub, now)
    failed, succeeded = st["last_failure"], st["last_success"]
    n_status = "failed" if failed and (not succeeded or failed > succeeded) else "ok"
    notification.update(
        {"status": n_status, "timesSent": st["times_sent"], "timesFailed": st["times_failed"]}
    )
    for key, value in (
        ("lastNotification", st["last_notification"]),
        ("lastSuccess", succeeded),
        ("lastFailure", failed),
    ):
        if value is not None:
            notification[key] = _dt(value)
    out["notification"] = notification
    if sub.disabled_reason and not sub.is_active:
        out["statusReason"] = sub.disabled_reason
    out["createdAt"] = _dt(sub.created_at)
    out["modifiedAt"] = _dt(sub.modified_at)
    if context:
        out["@context"] = CORE_CONTEXT
    return out


# --- the owner's current access -----------------------------------------------------------------------


def current_access(s: Session, sub: NgsiSubscription, settings: Settings, now: datetime) -> Access | None:
    """What the subscription's owner may read *now* (None: revoked, expired or disabled owner)."""
    try:
        principal = resolve_id(s, sub.credential_id, settings, now)
    except Rejected:
        return None
    if SCOPE not in principal.scopes:
        return None
    return principal.for_tenant(sub.tenant).access(SCOPE)


# --- matching -----------------------------------------------------------------------------------------


def _selector_matches(sel: dict[str, str], ev: LiveEvent) -> bool:
    if not ev.has_type(sel["type"]):
        return False
    if "id" in sel and sel["id"] != ev.entity_id:
        return False
    return "idPattern" not in sel or bool(sqlite_regexp(sel["idPattern"], ev.entity_id))


def wants(sub: NgsiSubscription, ev: LiveEvent) -> bool:
    """The subscription's own filters (entities, watchedAttributes), before any access or q check. A
    periodic subscription (``timeInterval``) is notified by the clock, never on change."""
    spec = sub.spec
    if "timeInterval" in spec:
        return False
    watched = spec.get("watchedAttributes")
    if watched and ev.attribute not in watched:
        return False
    selectors = spec.get("entities")
    return not selectors or any(_selector_matches(sel, ev) for sel in selectors)


def _attr_of(ev: LiveEvent, points: Sequence[tuple[int, Any]]) -> dict[str, Any]:
    t, v = points[-1]
    attr: dict[str, Any] = {"type": "Property", "value": v, "observedAt": iso(t)}
    if ev.unit:
        attr["unitCode"] = ev.unit
    return attr


@dataclass(frozen=True)
class Seen:
    """What the owner may read of the event's entity now: its attributes with the new value merged in."""

    entity: Entity
    attrs: dict[str, Any]


def seen_by_owner(s: Session, access: Access, ev: LiveEvent) -> Seen | None:
    points = visible_points(access, ev)
    if not points:
        return None
    try:
        e = visible_entity(s, access, ev.entity_id)
    except (NotFound, Conflict):
        return None
    if e.org_id != ev.org_id:
        return None
    attrs = dict(entity_attrs(access, e))
    attrs[ev.attribute] = _attr_of(ev, points)
    return Seen(e, attrs)


def matching(
    s: Session, settings: Settings, events: Sequence[LiveEvent], now: datetime
) -> list[tuple[NgsiSubscription, LiveEvent]]:
    """The (subscription, event) pairs to notify: filters, q and the owner's current access all hold.
    Throttled subscriptions are skipped; those notified get ``last_notification`` set (the caller's
    transaction)."""
    subs = list(s.scalars(select(NgsiSubscription).where(NgsiSubscription.is_active.is_(True))))
    subs = [x for x in subs if x.expires_at is None or x.expires_at > now]
    out: list[tuple[NgsiSubscription, LiveEvent]] = []
    access_of: dict[str, Access | None] = {}
    for ev in events:
        for sub in subs:
            if not wants(sub, ev) or _throttled(sub, now):
                continue
            key = f"{sub.credential_id}|{sub.tenant}"
            if key not in access_of:
                access_of[key] = current_access(s, sub, settings, now)
            access = access_of[key]
            if access is None:
                continue
            seen = seen_by_owner(s, access, ev)
            if seen is None:
                continue
            q = sub.spec.get("q")
            if q is not None and not evaluate_q(parse_q(q), seen.attrs):
                continue
            if not geo_holds(sub.spec, seen):
                continue
            sub.last_notification = now
            out.append((sub, ev))
    return out


def geo_holds(spec: dict[str, Any], seen: Seen) -> bool:
    """The subscription's ``geoQ`` (if any) on the entity's geometry (the same predicates as queries)."""
    g = spec.get("geoQ")
    if not g:
        return True
    gq = parse_geo_query(g.get("georel"), g.get("geometry"), g.get("coordinates"), g.get("geoproperty"))
    if gq is None:
        return True
    geometry = entity_geometry(seen.entity.location, seen.attrs, gq.geoproperty)
    return gq.matches([geometry])[0]


def _throttled(sub: NgsiSubscription, now: datetime) -> bool:
    if not sub.throttling or sub.last_notification is None:
        return False
    return now < sub.last_notification + timedelta(seconds=sub.throttling)


# --- the notification ---------------------------------------------------------------------------------


def _concise(attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, attr in attrs.items():
        if not isinstance(attr, dict):
            out[name] = attr
            continue
        rest = {k: v for k, v in attr.items() if k != "type"}
        out[name] = rest["value"] if set(rest) == {"value"} and not isinstance(rest["value"], dict) else rest
    return out


def render_entity(spec: dict[str, Any], seen: Seen, *, context: bool) -> dict[str, Any]:
    e = seen.entity
    return render_parts(spec, e.entity_id, e.types, seen.attrs, e.location, context=context, scopes=e.scopes)


def render_parts(
    spec: dict[str, Any],
    entity_id: str,
    etype: str | list[str],
    attrs: dict[str, Any],
    location: dict[str, Any] | None,
    *,
    context: bool,
    scopes: list[str] | None = None,
) -> dict[str, Any]:
    """One entity of a Notification in the subscription's ``format`` with ``notification.attributes``."""
    n = spec["notification"]
    pick = frozenset(n["attributes"]) if "attributes" in n else None
    fmt = n.get("format", "normalized")
    body = render(
        entity_id,
        etype,
        attrs,
        location,
        pick=pick,
        key_values=fmt == "keyValues",
        context=False,
        scopes=scopes,
    )
    if fmt == "concise":
        head: dict[str, Any] = {k: body.pop(k) for k in ("id", "type", "scope") if k in body}
        body = {**head, **_concise(body)}
    if context:
        body["@context"] = CORE_CONTEXT
    return body


def notification(sub: NgsiSubscription, seen: Seen, now: datetime) -> tuple[dict[str, Any], str]:
    """``(body, content type)`` of the Notification for one event, as the owner may read it now."""
    ld = wants_ld_body(sub)
    return notification_of(sub, [render_entity(sub.spec, seen, context=ld)], now)


def wants_ld_body(sub: NgsiSubscription) -> bool:
    return bool(sub.spec["notification"]["endpoint"].get("accept") == "application/ld+json")


def notification_of(
    sub: NgsiSubscription, data: list[dict[str, Any]], now: datetime
) -> tuple[dict[str, Any], str]:
    """``(body, content type)`` of a Notification carrying the rendered entities ``data``."""
    ld = wants_ld_body(sub)
    body: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
        "type": "Notification",
        "subscriptionId": sub.sub_id,
        "notifiedAt": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": data,
    }
    if ld:
        body["@context"] = CORE_CONTEXT
    return body, "application/ld+json" if ld else "application/json"


# --- periodic notifications (timeInterval) -------------------------------------------------------------

# The job that sends them looks this often (sensorhub.background); timeInterval is at least this.
PERIODIC_CHECK_S = 5.0
# A periodic notification carries at most this many entities (the first ones by id).
MAX_PERIODIC_ENTITIES = 1000


def periodic_due(s: Session, now: datetime) -> list[NgsiSubscription]:
    """Active, unexpired periodic subscriptions whose ``timeInterval`` has passed since their last
    notification (or their creation)."""
    out = []
    for sub in s.scalars(select(NgsiSubscription).where(NgsiSubscription.is_active.is_(True))):
        every = sub.spec.get("timeInterval")
        if every is None or (sub.expires_at is not None and sub.expires_at <= now):
            continue
        since = sub.last_notification or sub.created_at
        if since + timedelta(seconds=float(every)) <= now:
            out.append(sub)
    return out


@dataclass(frozen=True)
class Current:
    """An entity as a periodic notification shows it: its attributes as the owner may read them, with
    the latest readable point of each of its default-topic series merged in."""

    org_id: str
    entity_id: str
    types: list[str]
    attrs: dict[str, Any]
    location: dict[str, Any] | None
    scopes: list[str] | None = None


def current_entities(s: Session, sub: NgsiSubscription, access: Access) -> list[Current]:
    """The entities the subscription matches *now* as ``access`` may read them: ``entities`` and
    ``geoQ`` select them (the entity query service), ``q`` holds on their attributes with the latest
    value of each default-topic series (as on-change notifications evaluate it); at most
    :data:`MAX_PERIODIC_ENTITIES`."""
    spec = sub.spec
    selectors = tuple(
        make_selector([sel["type"]], [sel["id"]] if "id" in sel else [], sel.get("idPattern"))
        for sel in spec.get("entities", [])
    )
    g = spec.get("geoQ") or {}
    geo = (
        parse_geo_query(g.get("georel"), g.get("geometry"), g.get("coordinates"), g.get("geoproperty"))
        if g
        else None
    )
    q = parse_q(spec["q"]) if spec.get("q") else None
    rows = query_entities(
        s, access, EntityQuery(selectors=selectors, geo=geo), limit=MAX_PERIODIC_ENTITIES
    ).rows
    latest = _latest_points(s, access, rows)
    out = []
    for r in rows:
        attrs = {**r.attrs, **latest.get((r.org_id, r.entity_id), {})}
        if q is None or evaluate_q(q, attrs):
            out.append(
                Current(r.org_id, r.entity_id, [r.type, *(r.extra_types or [])], attrs, r.location, r.scopes)
            )
    return out


def _latest_points(s: Session, access: Access, rows: Sequence[Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(org, entity id) → {attribute: Property} of the latest point of each default-topic series the
    owner may read (its time inside the entity's readable windows)."""
    wanted = {(r.org_id, r.entity_id): r for r in rows}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if not wanted:
        return out
    q = (
        select(
            Entity.org_id, Entity.entity_id, Series.attribute, Series.unit, Series.last_ts, Series.last_value
        )
        .join(Series, Series.entity_pk == Entity.pk)
        .where(Entity.entity_id.in_({e for _o, e in wanted}), Series.topic == DEFAULT_TOPIC)
    )
    readable = ReadableWindows(access)
    for org_id, entity_id, attribute, unit, ts, value in s.execute(q):
        row = wanted.get((org_id, entity_id))
        if row is None or ts is None or value is None:
            continue
        windows = readable.of(row)
        if not any(lo <= ts < hi for lo, hi in windows):
            continue
        prop: dict[str, Any] = {"type": "Property", "value": value, "observedAt": iso(ts)}
        if unit:
            prop["unitCode"] = unit
        out.setdefault((org_id, entity_id), {})[attribute] = prop
    return out


def periodic_notification(
    sub: NgsiSubscription, rows: list[Current], now: datetime
) -> tuple[dict[str, Any], str]:
    ld = wants_ld_body(sub)
    data = [
        render_parts(sub.spec, r.entity_id, r.types, r.attrs, r.location, context=ld, scopes=r.scopes)
        for r in rows
    ]
    return notification_of(sub, data, now)


# --- q on one entity ----------------------------------------------------------------------------------

_MISSING = object()


def _walk_all(attrs: dict[str, Any], keys: tuple[str, ...]) -> list[Any]:
    """The values at ``keys``; a last key ``*`` (``attr[*]``): every string of the languageMap there."""
    if keys[-1:] != (ANY_KEY,):
        return [_walk(attrs, keys)]
    lmap = _walk(attrs, keys[:-1])
    if not isinstance(lmap, dict):
        return [_MISSING]
    return [v for v in lmap.values() if isinstance(v, str)] or [_MISSING]


def _walk(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = attrs
    for k in keys:
        if not isinstance(value, dict) or k not in value:
            return _MISSING
        value = value[k]
    return value


def _same_kind(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str)
    return isinstance(a, (int, float)) and isinstance(b, (int, float))


def _eq(value: Any, target: Any) -> bool:
    return _same_kind(value, target) and value == target


def _positive(c: Comparison, value: Any) -> bool:
    if value is _MISSING:
        return False
    if c.op in ("~=", "!~="):
        return isinstance(value, str) and bool(sqlite_regexp(str(c.value), value))
    if c.kind == "range":
        assert isinstance(c.value, tuple)
        lo, hi = c.value
        return _same_kind(value, lo) and not isinstance(value, bool) and lo <= value <= hi
    if c.kind == "list":
        assert isinstance(c.value, tuple)
        return any(_eq(value, v) for v in c.value)
    return _eq(value, c.value)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    ">": lambda a, b: bool(a > b),
    "<": lambda a, b: bool(a < b),
    ">=": lambda a, b: bool(a >= b),
    "<=": lambda a, b: bool(a <= b),
}


def _compare(c: Comparison, value: Any) -> bool:
    if value is _MISSING or isinstance(value, bool) or not _same_kind(value, c.value):
        return False
    return _ORDER[str(c.op)](value, c.value)


def evaluate_q(node: Node, attrs: dict[str, Any]) -> bool:
    """``q`` (parsed by :func:`sensorhub.entities.qlang.parse_q`) on one entity's normalized attributes,
    with the meaning of the SQL the entity queries compile it to (the same JSON paths, from
    :func:`sensorhub.entities.qlang.roots_of`): type-aware comparisons, ``!=`` only on entities that have
    the attribute. A subscription's ``q`` never reaches linked entities (refused when it is made)."""
    if isinstance(node, BoolOp):
        parts = (evaluate_q(n, attrs) for n in node.items)
        return all(parts) if node.op == "and" else any(parts)
    if isinstance(node, Linked):
        raise AssertionError("q on linked entities is refused in subscriptions")
    roots = roots_of(node)
    if not roots:
        return False
    values = [v for r in roots for v in _walk_all(attrs, r)]
    present = any(v is not _MISSING for v in values)
    if node.op is None:
        if len(node.path) == 1 and not node.inner:
            return node.path[0] in attrs
        return present
    if node.op in ("!=", "!~="):
        return present and not any(_positive(node, v) for v in values)
    if node.op in ("==", "~="):
        return any(_positive(node, v) for v in values)
    return any(_compare(node, v) for v in values)
