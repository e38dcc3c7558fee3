"""NGSI-LD ``Subscription`` bodies (ETSI GS CIM 009 V1.8 §5.2.12): what a client may send, checked.

A body is turned into the stored *spec* (a dict of the members this server implements, normalised) or
refused with a 400 naming the member. Members of the data type this server does not implement are
refused by name (:data:`NOT_IMPLEMENTED`), never ignored: a subscription that silently dropped ``scopeQ``
would notify more than its owner asked for.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sensorhub.compat.ngsi_ld.contexts import context_links, is_core
from sensorhub.compat.ngsi_ld.geo import geo_from_body
from sensorhub.entities.normalize import check_attr_name, check_context, check_entity_id, check_type
from sensorhub.entities.qlang import linked_depth, parse_q
from sensorhub.errors import BadRequest
from sensorhub.kit.patterns import check_pattern
from sensorhub.kit.time import parse_iso
from sensorhub.push import ngsi_mqtt
from sensorhub.push.subscriptions import PERIODIC_CHECK_S

# Members of the Subscription data type this server does not implement (400 naming them).
NOT_IMPLEMENTED = {
    "temporalQ": "temporal queries in subscriptions are not implemented",
    "scopeQ": "scopeQ in subscriptions is not implemented (entity queries take it)",
    "csf": "context source filters are not implemented",
    "lang": "LanguageProperty filtering is not implemented",
    "notificationTrigger": "only the default triggers (attribute created or updated) are implemented",
    "jsonldContext": "only the core @context is understood",
}
NOTIFICATION_NOT_IMPLEMENTED = {
    "sysAttrs": "sysAttrs in notifications are not implemented",
    "showChanges": "showChanges is not implemented",
    "join": "linked entity retrieval is not implemented",
    "joinLevel": "linked entity retrieval is not implemented",
}
ENDPOINT_NOT_IMPLEMENTED = {
    "receiverInfo": "receiverInfo (extra headers) is not implemented",
    "timeout": "a per-subscription timeout is not implemented (the server's delivery timeout applies)",
    "cooldown": "cooldown is not implemented (use throttling)",
}
# Read-only members the server sets; accepted (and ignored) only with their current value on output.
READ_ONLY = frozenset({"status", "createdAt", "modifiedAt"})
NOTIFICATION_READ_ONLY = frozenset(
    {"status", "timesSent", "timesFailed", "lastNotification", "lastFailure", "lastSuccess"}
)

MEMBERS = frozenset(
    {
        "id",
        "type",
        "subscriptionName",
        "description",
        "entities",
        "watchedAttributes",
        "q",
        "geoQ",
        "notification",
        "expiresAt",
        "throttling",
        "timeInterval",
        "isActive",
        "@context",
    }
)
NOTIFICATION_MEMBERS = frozenset({"attributes", "format", "endpoint"})
ENDPOINT_MEMBERS = frozenset({"uri", "accept", "notifierInfo"})
SELECTOR_MEMBERS = frozenset({"id", "idPattern", "type"})
FORMATS = frozenset({"normalized", "keyValues", "concise"})
ACCEPTS = frozenset({"application/json", "application/ld+json"})
MAX_ITEMS = 100
MAX_TEXT = 1000
MAX_URI = 2048


class NotImplementedMember(BadRequest):
    """A member of the Subscription data type this server does not implement: 400, ETSI type
    ``NotImplemented``, naming it."""

    ngsi_type = "NotImplemented"


def check_link_contexts(link: str | None) -> None:
    """A ``Link`` header naming a user @context would have the body's terms read unexpanded: refused."""
    for url in context_links(link):
        if not is_core(url):
            raise BadRequest(
                "Link: subscriptions understand only the NGSI-LD core @context; user contexts are not "
                "supported here (send full attribute names)"
            )


def _refuse_unknown(
    body: dict[str, Any], allowed: frozenset[str], not_impl: dict[str, str], where: str
) -> None:
    for name, why in not_impl.items():
        if name in body:
            raise NotImplementedMember(f"'{where}{name}' is not implemented by this server: {why}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(
            f"unknown Subscription member '{where}{unknown[0]}'; {where or 'a Subscription'} may hold "
            f"{', '.join(sorted(allowed - {'@context'}))}"
        )


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"'{name}' must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise BadRequest(f"'{name}' is longer than {MAX_TEXT} characters")
    return value


def _names(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise BadRequest(f"'{name}' must be a non-empty list of attribute names")
    if len(value) > MAX_ITEMS:
        raise BadRequest(f"'{name}' may list at most {MAX_ITEMS} attributes")
    out: list[str] = []
    for v in value:
        if not isinstance(v, str):
            raise BadRequest(f"'{name}' must list attribute names (strings)")
        out.append(check_attr_name(v))
    return list(dict.fromkeys(out))


def _selector(i: int, sel: Any) -> dict[str, str]:
    where = f"entities[{i}]"
    if not isinstance(sel, dict):
        raise BadRequest(f"'{where}' must be an object with type and optionally id or idPattern")
    extra = sorted(set(sel) - SELECTOR_MEMBERS)
    if extra:
        raise BadRequest(
            f"unknown member '{where}.{extra[0]}'; an entity selector may hold id, idPattern, type"
        )
    if "type" not in sel:
        raise BadRequest(f"'{where}.type' is mandatory (ETSI GS CIM 009: EntitySelector.type)")
    out = {"type": check_type(sel["type"])}
    if "id" in sel and "idPattern" in sel:
        raise BadRequest(f"'{where}' may hold id or idPattern, not both")
    if "id" in sel:
        out["id"] = check_entity_id(sel["id"], f"{where}.id")
    if "idPattern" in sel:
        if not isinstance(sel["idPattern"], str):
            raise BadRequest(f"'{where}.idPattern' must be a string")
        out["idPattern"] = check_pattern(sel["idPattern"], f"{where}.idPattern")
    return out


def _entities(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise BadRequest("'entities' must be a non-empty list of entity selectors")
    if len(value) > MAX_ITEMS:
        raise BadRequest(f"'entities' may hold at most {MAX_ITEMS} entity selectors")
    return [_selector(i, s) for i, s in enumerate(value)]


def _endpoint(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest("'notification.endpoint' must be an object with uri (and accept)")
    _refuse_unknown(value, ENDPOINT_MEMBERS, ENDPOINT_NOT_IMPLEMENTED, "notification.endpoint.")
    uri = value.get("uri")
    if not isinstance(uri, str) or not uri:
        raise BadRequest("'notification.endpoint.uri' is mandatory: the URL notifications are sent to")
    if len(uri) > MAX_URI:
        raise BadRequest(f"'notification.endpoint.uri' is longer than {MAX_URI} characters")
    parts = urlsplit(uri)
    accept = value.get("accept", "application/json")
    if accept not in ACCEPTS:
        raise BadRequest("'notification.endpoint.accept' must be application/json or application/ld+json")
    out: dict[str, Any] = {"uri": uri, "accept": accept}
    if parts.scheme in ngsi_mqtt.SCHEMES:
        ngsi_mqtt.check_uri(uri)
        if "notifierInfo" in value:
            out["notifierInfo"] = ngsi_mqtt.notifier_info(value["notifierInfo"])
        return out
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(
            "'notification.endpoint.uri' must be an http(s):// URL or an mqtt(s)://host[:port]/topic URI"
        )
    if parts.username or parts.password:
        raise BadRequest("'notification.endpoint.uri' must not carry credentials")
    if "notifierInfo" in value:
        raise BadRequest(
            "'notification.endpoint.notifierInfo' applies to mqtt:// and mqtts:// endpoints only"
        )
    return out


def _notification(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest("'notification' is mandatory: an object with endpoint (and attributes, format)")
    body = {k: v for k, v in value.items() if k not in NOTIFICATION_READ_ONLY}
    _refuse_unknown(body, NOTIFICATION_MEMBERS, NOTIFICATION_NOT_IMPLEMENTED, "notification.")
    out: dict[str, Any] = {"format": body.get("format", "normalized")}
    if out["format"] not in FORMATS:
        raise BadRequest("'notification.format' must be normalized, keyValues or concise")
    if "attributes" in body:
        out["attributes"] = _names(body["attributes"], "notification.attributes")
    out["endpoint"] = _endpoint(body.get("endpoint"))
    return out


def _expires(value: Any, now: datetime) -> str:
    if not isinstance(value, str):
        raise BadRequest("'expiresAt' must be an ISO 8601 date-time string")
    at = parse_iso(value, "expiresAt")
    if at <= now:
        raise BadRequest("'expiresAt' must be in the future")
    return at.isoformat().replace("+00:00", "Z")


def _throttling(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest("'throttling' must be a number of seconds")
    if value <= 0 or value > 86_400 * 365:
        raise BadRequest("'throttling' must be a positive number of seconds (at most a year)")
    return float(value)


def _time_interval(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest("'timeInterval' must be a number of seconds")
    if value < PERIODIC_CHECK_S or value > 86_400 * 365:
        raise BadRequest(
            f"'timeInterval' must be between {PERIODIC_CHECK_S:g} seconds (how often the server looks) and a year"
        )
    return float(value)


_CHECKS: dict[str, Any] = {
    "subscriptionName": lambda v, now: _text(v, "subscriptionName"),
    "description": lambda v, now: _text(v, "description"),
    "entities": lambda v, now: _entities(v),
    "watchedAttributes": lambda v, now: _names(v, "watchedAttributes"),
    "notification": lambda v, now: _notification(v),
    "expiresAt": _expires,
    "throttling": lambda v, now: _throttling(v),
    "timeInterval": lambda v, now: _time_interval(v),
}


def _q(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("'q' must be a non-empty string")
    if linked_depth(parse_q(value)):  # a 400 naming what does not parse
        raise NotImplementedMember(
            f"'q' on linked entities (rel{{attr}}): {NOTIFICATION_NOT_IMPLEMENTED['join']}"
        )
    return value


def _members(body: Any, *, fragment: bool) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be an NGSI-LD Subscription object")
    if not fragment and body.get("type") != "Subscription":
        raise BadRequest('the body must have "type": "Subscription"')
    if fragment and "type" in body and body["type"] != "Subscription":
        raise BadRequest('"type" must be "Subscription"')
    if "@context" in body:
        check_context(body["@context"])
    rest = {k: v for k, v in body.items() if k not in READ_ONLY}
    _refuse_unknown(rest, MEMBERS, NOT_IMPLEMENTED, "")
    return rest


def parse_subscription(body: Any, now: datetime) -> tuple[str | None, dict[str, Any]]:
    """``(id or None, spec)`` from a POSTed Subscription; 400 naming the first problem."""
    rest = _members(body, fragment=False)
    sub_id = check_entity_id(rest["id"], "id") if "id" in rest else None
    spec = _spec_of(rest, now)
    _check_whole(spec)
    return sub_id, spec


def merge_fragment(spec: dict[str, Any], body: Any, now: datetime) -> dict[str, Any]:
    """The stored ``spec`` with a PATCH fragment's members replacing its own; the result is checked whole."""
    rest = _members(body, fragment=True)
    if "id" in rest:
        raise BadRequest("'id' cannot be changed")
    if not (set(rest) - {"type", "@context"}):
        raise BadRequest("the fragment changes nothing: give at least one Subscription member")
    merged = dict(spec)
    merged.update(_spec_of(rest, now))
    _check_whole(merged)
    return merged


def _spec_of(rest: dict[str, Any], now: datetime) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for name, value in rest.items():
        if name in ("id", "type", "@context"):
            continue
        if name == "q":
            spec["q"] = _q(value)
        elif name == "geoQ":
            geo_from_body(value)  # a 400 naming what is wrong
            spec["geoQ"] = {k: v for k, v in value.items() if v is not None}
        elif name == "isActive":
            if not isinstance(value, bool):
                raise BadRequest("'isActive' must be true or false")
            spec["isActive"] = value
        else:
            spec[name] = _CHECKS[name](value, now)
    return spec


def _check_whole(spec: dict[str, Any]) -> None:
    if "notification" not in spec:
        raise BadRequest("'notification' is mandatory: an object with endpoint.uri")
    if "timeInterval" in spec:
        # ETSI GS CIM 009 §5.2.12: a periodic subscription has no watchedAttributes and no throttling.
        for other in ("watchedAttributes", "throttling"):
            if other in spec:
                raise BadRequest(
                    f"'timeInterval' and '{other}' are mutually exclusive: a periodic subscription "
                    "notifies every timeInterval seconds, not on change"
                )
        if "entities" not in spec:
            raise BadRequest("a periodic Subscription (timeInterval) needs 'entities'")
    if "entities" not in spec and "watchedAttributes" not in spec:
        raise BadRequest("a Subscription needs 'entities' or 'watchedAttributes' (or both)")
