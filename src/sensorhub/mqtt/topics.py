"""The MQTT topic scheme and payloads (docs/mqtt.md), as pure functions.

Publish (scope ``ingest``):

- ``sensorhub/{org}/{workspace}/{device}/{attribute}`` with a plain number (``21.5``) as the payload:
  one point of (device, attribute) at the time the broker received it;
- ``sensorhub/{org}/{workspace}/{device}`` with a JSON backfill body: one record
  ``{timestamp?, topic?, data: {...}}`` or a list of them, exactly as ``POST /v3/devices/{id}/backfill``.

``{org}`` and ``{workspace}`` are slugs (or ids), ``{device}`` an entity id or asset id; an attribute
name with ``/`` spans several levels. Subscribe (scope ``telemetry``): the same per-attribute topics carry
every value as it is stored, whatever path it came in by, as JSON ``{"timestamp", "value", "unit"?, "topic"}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from sensorhub.errors import BadRequest
from sensorhub.timeseries.names import check_attribute_name, check_device_ref

ROOT = "sensorhub"
# Characters that cannot stand in one level of a topic name a subscriber receives.
_NOT_IN_LEVEL = frozenset("/+#")


@dataclass(frozen=True, slots=True)
class Target:
    org: str
    workspace: str
    device: str
    attribute: str | None  # None: the payload is a backfill body

    @property
    def tenant(self) -> str:
        return f"{self.org}/{self.workspace}"


def parse_topic(topic: str) -> Target:
    """The target of a publish topic, or :class:`BadRequest` saying what the scheme is."""
    levels = topic.split("/")
    if len(levels) < 4 or levels[0] != ROOT or not all(levels[1:4]):
        raise BadRequest(
            f"topic {topic[:120]!r} is outside the scheme: publish to {ROOT}/<org>/<workspace>/<device>"
            " (a JSON backfill record or list) or .../<device>/<attribute> (a plain number)"
        )
    device = check_device_ref(levels[3], "device")
    attribute = None
    if len(levels) > 4:
        attribute = check_attribute_name("/".join(levels[4:]), "attribute")
    return Target(levels[1], levels[2], device, attribute)


def body_of(target: Target, payload: bytes, received: str | None = None) -> bytes:
    """The backfill body a message stands for: the payload itself on a device topic; on an attribute
    topic a plain number, which becomes ``{"timestamp": received, "data": {attribute: number}}`` (no
    timestamp when ``received`` is None: the ingest service's "now")."""
    if target.attribute is None:
        return payload
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadRequest("the payload is not UTF-8 text; send a plain number such as 21.5") from None
    try:
        value: Any = orjson.loads(text)  # refuses NaN and Infinity (not JSON)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(
            f"the payload on an attribute topic must be a plain finite number such as 21.5 (got "
            f"{text[:40]!r}); send records with timestamps or other values as JSON to the device topic"
        )
    record: dict[str, Any] = {"data": {target.attribute: value}}
    if received is not None:
        record = {"timestamp": received, **record}
    return orjson.dumps(record)


def value_topic(org: str, workspace: str, device: str, attribute: str) -> str | None:
    """The topic a stored value of (device, attribute) is delivered on; None when the device id or
    attribute name holds a character a topic name cannot (subscribers read those through the API)."""
    if _NOT_IN_LEVEL & set(device) or "+" in attribute or "#" in attribute:
        return None
    return f"{ROOT}/{org}/{workspace}/{device}/{attribute}"


def filter_reaches_root(topic_filter: str) -> bool:
    """Whether a subscription filter can match topics under :data:`ROOT` (``sensorhub/...``, ``+/...``,
    ``#``); others can never receive anything and are refused."""
    first = topic_filter.split("/", 1)[0]
    return first in (ROOT, "+", "#")


def filter_org(topic_filter: str) -> str | None:
    """The organisation level a filter names, None when it is a wildcard (or absent)."""
    levels = topic_filter.split("/")
    if len(levels) < 2 or levels[1] in ("+", "#"):
        return None
    return levels[1]


def value_payload(ts: str, value: Any, unit: str | None, topic: str = "default") -> bytes:
    """A delivered value: ``{"timestamp", "value", "unit"?, "topic"}`` — ``topic`` is the Akenza topic of
    the series (values of every topic of (device, attribute) share the MQTT topic; docs/mqtt.md)."""
    body: dict[str, Any] = {"timestamp": ts, "value": value, "topic": topic}
    if unit is not None:
        body["unit"] = unit
    return orjson.dumps(body)
