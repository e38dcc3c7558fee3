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
    lines: list[int] = field(default_factory=list)  # the line number of each of its lines
    raw_times: list[int | None] = field(default_factory=list)  # each line's timestamp as sent
    # (topic, attribute) → (positions in ``lines``, values)
    columns: dict[tuple[str, str], tuple[list[int], list[Any]]] = field(default_factory=dict)
    # (position, attribute, value) of every non-numeric field
    state_obs: list[tuple[int, str, Any, str]] = field(default_factory=list)  # (pos, attr, value, topic)


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


_SLOW_FIRST = frozenset(" \t\r\f\v#")


@dataclass
class _Key:
    """What lines with one series key (measurement and tag set) share: the device they write, their
    topic and measurement, and per field name its column."""

    device: _Device
    topic: str
    measurement: str
    fields: dict[str, tuple[list[int], list[Any]]] = field(default_factory=dict)


def _new_key(parsed: dict[str, Any], devices: dict[str, _Device], device_tags: Sequence[str], n: int) -> _Key:
    tags = parsed["tags"]
    ref = _device(tags, device_tags, n)
    d = devices.get(ref)
    if d is None:
        d = devices[ref] = _Device(first_line=n)
    return _Key(d, _topic(tags, device_tags, n), parsed["measurement"])


def _column(k: _Key, name: str, n: int) -> tuple[list[int], list[Any]]:
    """The column (positions in the device's lines, values) of field ``name`` under key ``k``."""
    attr = _attribute(k.measurement, name, n)
    col = k.device.columns.get((k.topic, attr))
    if col is None:
        col = k.device.columns[k.topic, attr] = ([], [])
    k.fields[name] = col
    return col


def _parsed_lines(text: str, max_lines: int) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(line number, line, parsed line) of every line that is not blank or a comment."""
    parse_line = line_protocol_parser.parse_line
    format_error = line_protocol_parser.LineFormatError
    count = 0
    for n, raw in enumerate(text.split("\n"), start=1):
        line = raw
        if not line or line[0] in _SLOW_FIRST:
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
            yield n, line, parse_line(line)
        except format_error as e:
            raise BadRequest(f"line {n}: {e} ({line[:80]!r})") from None


def parse(
    body: bytes,
    precision: str,
    now_us: int,
    limits: Limits,
    device_tags: Sequence[str] = DEFAULT_DEVICE_TAGS,
) -> list[DeviceWrite]:
    """The points of a line-protocol body, one :class:`DeviceWrite` per device (in the order of first
    appearance); :class:`BadRequest` naming the line of the first problem, nothing parsed past it.

    Every line is parsed by the library; what lines share — the device, topic and attribute names
    their series key and field names resolve to — is resolved and checked once per key (cached by the
    key's text when the line has no escapes), and timestamps are converted in bulk."""
    devices: dict[str, _Device] = {}
    keys: dict[Any, _Key] = {}
    for n, line, parsed in _parsed_lines(_decode(body), limits.max_records):
        # The series key's text identifies measurement and tags when nothing in the line is escaped.
        cache_key: Any = (
            line[: line.find(" ")] if "\\" not in line else (parsed["measurement"], *parsed["tags"].items())
        )
        k = keys.get(cache_key)
        if k is None:
            k = keys[cache_key] = _new_key(parsed, devices, device_tags, n)
        d = k.device
        pos = len(d.lines)
        d.lines.append(n)
        d.raw_times.append(parsed["time"])
        for name, v in parsed["fields"].items():
            col = k.fields.get(name)
            if col is None:
                col = _column(k, name, n)
            if type(v) is float or type(v) is int:
                col[0].append(pos)
                col[1].append(v)
            else:
                d.state_obs.append((pos, _attribute(k.measurement, name, n), v, k.topic))
    if not devices:
        raise BadRequest("the body holds no line; send at least one line of line protocol")
    per_unit = _PRECISION_NS_PER_UNIT[precision]
    return [
        DeviceWrite(ref, d.first_line, _prepared(d, per_unit, now_us, limits)) for ref, d in devices.items()
    ]


def _times_us(d: _Device, ns_per_unit: int, now_us: int) -> np.ndarray:
    """µs timestamps of the device's lines (floor), refusing the first outside the supported range."""
    raw = d.raw_times
    missing = [i for i, t in enumerate(raw) if t is None] if None in raw else []
    vals = np.asarray([0 if t is None else t for t in raw] if missing else raw, dtype=np.int64)
    if ns_per_unit >= 1000:
        f = ns_per_unit // 1000
        lo, hi = -(-MIN_US // f), -(-MAX_US // f)  # raw values whose µs lie in [MIN_US, MAX_US)
        bad = (vals < lo) | (vals >= hi)
        us = vals * f
    else:
        us = vals // 1000
        bad = (us < MIN_US) | (us >= MAX_US)
    if missing:
        bad[missing] = False
        us[missing] = now_us
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BadRequest(
            f"line {d.lines[i]}: timestamp {raw[i]} is outside the supported time range, {RANGE_TEXT}"
        )
    return us


def _prepared(d: _Device, ns_per_unit: int, now_us: int, limits: Limits) -> Prepared:
    p = Prepared()
    p.record_ts = _times_us(d, ns_per_unit, now_us)
    columns = {key: col for key, col in d.columns.items() if col[0]}
    names = {attr for _topic, attr in columns} | {attr for _pos, attr, _v, _t in d.state_obs}
    if len(names) > limits.max_attributes:
        raise PayloadTooLarge(
            f"line {d.first_line}: the device has {len(names)} distinct attributes in this request; at "
            f"most {limits.max_attributes} (SENSORHUB_INGEST_MAX_ATTRIBUTES): split the write"
        )
    lines = np.asarray(d.lines, dtype=np.int64)
    for key, (positions, values) in columns.items():
        where = np.asarray(positions, dtype=np.int64)
        arr = np.asarray(values, dtype=np.float64)
        if not np.isfinite(arr).all():
            bad = int(lines[where[int(np.flatnonzero(~np.isfinite(arr))[0])]])
            raise BadRequest(f"line {bad}: a field value is not a finite number")
        p.numeric[key] = NumericColumn(records=lines[where].tolist(), array=arr, ts=p.record_ts[where])
    for pos, attr, value, topic in d.state_obs:
        t = int(p.record_ts[pos])
        prev = p.states.get(attr)
        if prev is None or t >= prev[0]:
            p.states[attr] = (t, value, None)
            p.state_topics[attr] = topic
    p.state_count = len(d.state_obs)
    months = np.unique(p.record_ts.astype("datetime64[us]").astype("datetime64[M]")).size
    if months > limits.max_months:
        raise PayloadTooLarge(
            f"line {d.first_line}: the device's points span {months} calendar months; at most "
            f"{limits.max_months} per request (SENSORHUB_INGEST_MAX_MONTHS): split the write by time"
        )
    return p
