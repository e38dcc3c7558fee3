"""InfluxDB line protocol in: lines → one prepared write per device (the ingest service stores them).

Lines are parsed by ``line-protocol-parser`` (a maintained C extension: escapes, quoted strings,
integers ``i``, unsigned ``u``, booleans, floats, comments). What a line means here:

- **device**: the value of the first *device tag* the line carries, in the configured order
  (``SENSORHUB_LINE_PROTOCOL_DEVICE_TAGS``, default ``device,entity_id,host``: ``host`` is the tag
  Telegraf adds to every metric). An entity id or asset id; a line without any of them is refused.
- **topic**: the ``topic`` tag if there is one; otherwise the line's other tags (every tag but the
  device tags) as ``key=value`` pairs sorted by key and joined by ``,`` (InfluxDB's own series key
  order), e.g. ``cpu=cpu0``; ``default`` for a line with no other tags. So ``cpu,cpu=cpu0,host=h1`` and
  ``cpu,cpu=cpu1,host=h1`` are distinct series of the device ``h1``, as they are in InfluxDB.
- **attribute**: ``<measurement>_<field>`` (Telegraf's Prometheus naming: ``cpu_usage_user``), or the
  measurement alone for a field named ``value`` (``temperature value=21`` → ``temperature``).
- **values**: floats, integers (``i``) and unsigned integers (``u``) become points (as float64: an
  integer beyond 2^53 loses precision); booleans and strings become the latest-state property of that
  attribute, as in a JSON backfill.
- **timestamps**: integers in the request's precision (``ns`` default, ``us``, ``ms``, ``s``; the 1.x
  endpoint also ``n``, ``u``, ``m``, ``h``), stored in microseconds (floor: finer digits are dropped, so
  two points of one series in the same microsecond are one point and the second a duplicate). A line
  without a timestamp takes the server's time at arrival.

Everything is checked before anything is stored; a problem is refused naming its line (1-based, counted
as the client sent them, comment and blank lines included).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import line_protocol_parser
import numpy as np

from sensorhub.errors import BadRequest, PayloadTooLarge
from sensorhub.kit.time import MAX_US, MIN_US, RANGE_TEXT
from sensorhub.timeseries.ingest import Limits, NumericColumn, Prepared, is_topic
from sensorhub.timeseries.models import DEFAULT_TOPIC
from sensorhub.timeseries.names import GRAMMAR_TEXT, check_device_ref, is_attribute_name

DEFAULT_DEVICE_TAGS = ("device", "entity_id", "host")
TOPIC_TAG = "topic"
# Timestamp precision → divisor (to µs, floor) or multiplier (from s, m, h).
_PRECISION_NS_PER_UNIT = {
    "ns": 1,
    "n": 1,
    "us": 1_000,
    "u": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
V2_PRECISIONS = ("ns", "us", "ms", "s")
V1_PRECISIONS = ("n", "ns", "u", "us", "ms", "s", "m", "h")


def check_precision(value: str | None, allowed: Sequence[str]) -> str:
    if value is None or value == "":
        return "ns"
    if value not in allowed:
        raise BadRequest(f"precision '{value[:20]}' is not supported; use one of {', '.join(allowed)}")
    return value


@dataclass
class _Device:
    first_line: int
    # (topic, attribute) → (line numbers, µs timestamps, values)
    columns: dict[tuple[str, str], tuple[list[int], list[int], list[float]]] = field(default_factory=dict)
    # attribute → (µs timestamp, value, line) of the latest non-numeric observation
    states: dict[str, tuple[int, Any, int]] = field(default_factory=dict)
    state_count: int = 0
    times: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeviceWrite:
    """The prepared points of one device, and the first line that names it (for errors)."""

    device: str
    first_line: int
    prepared: Prepared


def _attribute(measurement: str, name: str, line: int) -> str:
    attr = measurement if name == "value" else f"{measurement}_{name}"
    if not is_attribute_name(attr):
        raise BadRequest(
            f"line {line}: measurement and field make the attribute {attr[:60]!r}, which is not a valid "
            f"attribute name ({GRAMMAR_TEXT})"
        )
    return attr


def _topic(tags: dict[str, str], device_tags: Sequence[str], line: int) -> str:
    topic = tags.get(TOPIC_TAG)
    if topic is None:
        rest = sorted((k, v) for k, v in tags.items() if k not in device_tags)
        topic = ",".join(f"{k}={v}" for k, v in rest) if rest else DEFAULT_TOPIC
    if not is_topic(topic):
        raise BadRequest(
            f"line {line}: the topic {topic[:60]!r} (from its tags) must be 1-200 printable characters; "
            "set a shorter 'topic' tag"
        )
    return topic


def _device(tags: dict[str, str], device_tags: Sequence[str], line: int) -> str:
    for t in device_tags:
        ref = tags.get(t)
        if ref is not None:
            return check_device_ref(ref, f"line {line}: tag '{t}'")
    raise BadRequest(
        f"line {line}: no tag names the device; add a tag {' or '.join(repr(t) for t in device_tags)} "
        "whose value is the entity id or asset id"
    )


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        line = body[: e.start].count(b"\n") + 1
        raise BadRequest(f"line {line}: the body is not UTF-8 (byte {e.start})") from None


def _lines(text: str, max_lines: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, parsed line) of every line that is not blank or a comment."""
    parse_line = line_protocol_parser.parse_line
    count = 0
    for n, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        count += 1
        if count > max_lines:
            raise PayloadTooLarge(
                f"line {n}: at most {max_lines} lines per request (SENSORHUB_INGEST_MAX_RECORDS); "
                "split the write"
            )
        try:
            yield n, parse_line(line)
        except line_protocol_parser.LineFormatError as e:
            raise BadRequest(f"line {n}: {e} ({line[:80]!r})") from None


class _Names:
    """The checked device, topic and attribute names of one request: a body repeats the same few
    names on every line, so each is checked once (the checks cost more than the parse)."""

    def __init__(self, device_tags: Sequence[str]) -> None:
        self.device_tags = device_tags
        self.devices: dict[tuple[tuple[str, str], ...], tuple[str, str]] = {}
        self.attributes: dict[tuple[str, str], str] = {}

    def device_topic(self, tags: dict[str, str], n: int) -> tuple[str, str]:
        key = tuple(tags.items())
        hit = self.devices.get(key)
        if hit is None:
            hit = self.devices[key] = (_device(tags, self.device_tags, n), _topic(tags, self.device_tags, n))
        return hit

    def attribute(self, measurement: str, name: str, n: int) -> str:
        hit = self.attributes.get((measurement, name))
        if hit is None:
            hit = self.attributes[measurement, name] = _attribute(measurement, name, n)
        return hit


def _add_fields(
    d: _Device, names: _Names, n: int, ts: int, topic: str, measurement: str, fields: dict[str, Any]
) -> None:
    d.times.append(ts)
    for name, v in fields.items():
        attr = names.attribute(measurement, name, n)
        if type(v) is float or type(v) is int:
            col = d.columns.get((topic, attr))
            if col is None:
                col = d.columns[topic, attr] = ([], [], [])
            col[0].append(n)
            col[1].append(ts)
            col[2].append(float(v))
        else:
            prev = d.states.get(attr)
            if prev is None or ts >= prev[0]:
                d.states[attr] = (ts, v, n)
            d.state_count += 1


def parse(
    body: bytes,
    precision: str,
    now_us: int,
    limits: Limits,
    device_tags: Sequence[str] = DEFAULT_DEVICE_TAGS,
) -> list[DeviceWrite]:
    """The points of a line-protocol body, one :class:`DeviceWrite` per device (in the order of first
    appearance); :class:`BadRequest` naming the line of the first problem, nothing parsed past it."""
    per_unit = _PRECISION_NS_PER_UNIT[precision]
    devices: dict[str, _Device] = {}
    names = _Names(device_tags)
    for n, parsed in _lines(_decode(body), limits.max_records):
        ref, topic = names.device_topic(parsed["tags"], n)
        t = parsed["time"]
        ts = now_us if t is None else _to_us(t, per_unit, n)
        d = devices.get(ref)
        if d is None:
            d = devices[ref] = _Device(first_line=n)
        _add_fields(d, names, n, ts, topic, parsed["measurement"], parsed["fields"])
    if not devices:
        raise BadRequest("the body holds no line; send at least one line of line protocol")
    return [DeviceWrite(ref, d.first_line, _prepared(d, limits)) for ref, d in devices.items()]


def _to_us(t: int, ns_per_unit: int, line: int) -> int:
    ns = t * ns_per_unit
    us = ns // 1000
    if not MIN_US <= us < MAX_US:
        raise BadRequest(f"line {line}: timestamp {t} is outside the supported time range, {RANGE_TEXT}")
    return us


def _prepared(d: _Device, limits: Limits) -> Prepared:
    p = Prepared()
    names = {attr for _topic, attr in d.columns} | set(d.states)
    if len(names) > limits.max_attributes:
        raise PayloadTooLarge(
            f"line {d.first_line}: the device has {len(names)} distinct attributes in this request; at "
            f"most {limits.max_attributes} (SENSORHUB_INGEST_MAX_ATTRIBUTES): split the write"
        )
    for key, (lines, ts, values) in d.columns.items():
        arr = np.asarray(values, dtype=np.float64)
        if not np.isfinite(arr).all():
            bad = lines[int(np.flatnonzero(~np.isfinite(arr))[0])]
            raise BadRequest(f"line {bad}: a field value is not a finite number")
        p.numeric[key] = NumericColumn(records=lines, array=arr, ts=np.asarray(ts, dtype=np.int64))
    p.states = {k: (t, v, None) for k, (t, v, _line) in d.states.items()}
    p.state_count = d.state_count
    p.record_ts = np.asarray(d.times, dtype=np.int64)
    months = np.unique(p.record_ts.astype("datetime64[us]").astype("datetime64[M]")).size
    if months > limits.max_months:
        raise PayloadTooLarge(
            f"line {d.first_line}: the device's points span {months} calendar months; at most "
            f"{limits.max_months} per request (SENSORHUB_INGEST_MAX_MONTHS): split the write by time"
        )
    return p
