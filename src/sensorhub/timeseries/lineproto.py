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
import pyarrow as pa
import pyarrow.compute as pc

from sensorhub.errors import BadRequest, PayloadTooLarge, SensorhubError
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

    A body of the common shape — no escapes, quotes, comments or tabs; every line ``key fields
    [timestamp]`` with numeric fields (floats, integers ``i``) — is parsed column-wise
    (:func:`_parse_columns`: pyarrow's string kernels on the whole body, the library for each distinct
    series key); any other body line by line by the library. Both give the same writes (tested line
    for line); any problem found column-wise sends the body to the line-by-line path, which names it.

    Line by line, what lines share — the device, topic and attribute names their series key and field
    names resolve to — is resolved and checked once per key (cached by the key's text when the line has
    no escapes), and timestamps are converted in bulk."""
    text = _decode(body)
    fast = _parse_columns(text, precision, now_us, limits, device_tags)
    if fast is not None:
        return fast
    return parse_lines(text, precision, now_us, limits, device_tags)


def parse_lines(
    text: str,
    precision: str,
    now_us: int,
    limits: Limits,
    device_tags: Sequence[str] = DEFAULT_DEVICE_TAGS,
) -> list[DeviceWrite]:
    """:func:`parse` line by line, every line by the library (any body)."""
    devices: dict[str, _Device] = {}
    keys: dict[Any, _Key] = {}
    for n, line, parsed in _parsed_lines(text, limits.max_records):
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
        DeviceWrite(ref, d.first_line, _prepared_device(d, per_unit, now_us, limits))
        for ref, d in devices.items()
    ]


def _prepared_device(d: _Device, ns_per_unit: int, now_us: int, limits: Limits) -> Prepared:
    raw = d.raw_times
    missing = np.asarray([t is None for t in raw], dtype=bool) if None in raw else None
    vals = np.asarray([0 if t is None else t for t in raw] if missing is not None else raw, dtype=np.int64)
    columns = {
        key: (np.asarray(pos, dtype=np.int64), np.asarray(v, dtype=np.float64))
        for key, (pos, v) in d.columns.items()
        if pos
    }
    lines = np.asarray(d.lines, dtype=np.int64)
    ts = _times_us(lines, vals, missing, ns_per_unit, now_us)
    return _prepared(d.first_line, lines, ts, columns, d.state_obs, limits)


def _times_us(
    lines: np.ndarray, vals: np.ndarray, missing: np.ndarray | None, ns_per_unit: int, now_us: int
) -> np.ndarray:
    """µs timestamps of a device's lines (floor) from their raw values (``missing``: the lines without
    a timestamp, which take ``now_us``), refusing the first outside the supported range."""
    if ns_per_unit >= 1000:
        f = ns_per_unit // 1000
        lo, hi = -(-MIN_US // f), -(-MAX_US // f)  # raw values whose µs lie in [MIN_US, MAX_US)
        bad = (vals < lo) | (vals >= hi)
        us = vals * f
    else:
        us = vals // 1000
        bad = (us < MIN_US) | (us >= MAX_US)
    if missing is not None:
        bad[missing] = False
        us[missing] = now_us
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BadRequest(
            f"line {int(lines[i])}: timestamp {int(vals[i])} is outside the supported time range, {RANGE_TEXT}"
        )
    return us


def _prepared(
    first_line: int,
    lines: np.ndarray,
    record_ts: np.ndarray,
    columns: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]],
    state_obs: list[tuple[int, str, Any, str]],
    limits: Limits,
) -> Prepared:
    """One device's prepared write from its lines (line numbers), their µs timestamps, its numeric
    columns (positions among its lines, values) and its non-numeric fields."""
    p = Prepared()
    p.record_ts = record_ts
    names = {attr for _topic, attr in columns} | {attr for _pos, attr, _v, _t in state_obs}
    if len(names) > limits.max_attributes:
        raise PayloadTooLarge(
            f"line {first_line}: the device has {len(names)} distinct attributes in this request; at "
            f"most {limits.max_attributes} (SENSORHUB_INGEST_MAX_ATTRIBUTES): split the write"
        )
    for key, (where, arr) in columns.items():
        if not np.isfinite(arr).all():
            bad = int(lines[where[int(np.flatnonzero(~np.isfinite(arr))[0])]])
            raise BadRequest(f"line {bad}: a field value is not a finite number")
        p.numeric[key] = NumericColumn(records=lines[where].tolist(), array=arr, ts=p.record_ts[where])
    for pos, attr, value, topic in state_obs:
        t = int(p.record_ts[pos])
        prev = p.states.get(attr)
        if prev is None or t >= prev[0]:
            p.states[attr] = (t, value, None)
            p.state_topics[attr] = topic
    p.state_count = len(state_obs)
    months = np.unique(p.record_ts.astype("datetime64[us]").astype("datetime64[M]")).size
    if months > limits.max_months:
        raise PayloadTooLarge(
            f"line {first_line}: the device's points span {months} calendar months; at most "
            f"{limits.max_months} per request (SENSORHUB_INGEST_MAX_MONTHS): split the write by time"
        )
    return p


# --- the column-wise path ------------------------------------------------------------------------------

# What the column-wise path takes: floats and integers (``i``, up to 15 digits: exact as float64) as the
# library reads them, and integer timestamps; any other body goes line by line.
_FLOAT = r"^-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$"
_INT = r"^-?\d{1,15}i$"
_TIME = r"^-?\d{1,19}$"  # beyond int64: the cast fails, the body goes line by line
_OUT_OF_SHAPE = ("\\", '"', "\r", "\t", "\f", "\v")


def _all(mask: pa.Array) -> bool:
    return bool(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool).all())


def _parse_columns(
    text: str, precision: str, now_us: int, limits: Limits, device_tags: Sequence[str]
) -> list[DeviceWrite] | None:
    """:func:`parse` of a body of the common shape without a Python object per line or point; ``None``
    for any other body or any problem (the line-by-line path then parses it, and names the problem)."""
    if any(c in text for c in _OUT_OF_SHAPE):
        return None
    try:
        body = _columns(text, limits)
        return None if body is None else _assemble(body, precision, now_us, limits, device_tags)
    except (SensorhubError, pa.ArrowException, line_protocol_parser.LineFormatError):
        return None


def _split(arr: pa.Array, sep: str) -> tuple[pa.Array, np.ndarray]:
    """The pieces of every string of ``arr`` split at ``sep`` (flattened), and how many each has."""
    parts = pc.split_pattern(arr, sep)
    return parts.flatten(), np.asarray(pc.list_value_length(parts).to_numpy(zero_copy_only=False), np.int64)


def _take(arr: pa.Array, idx: np.ndarray) -> pa.Array:
    return arr.take(pa.array(idx, pa.int64()))


@dataclass(frozen=True, slots=True)
class _Body:
    """A body parsed column-wise: per line its number, raw timestamp (and whether it has none) and series
    key; per field its line, name and value."""

    line_no: np.ndarray
    raw_ts: np.ndarray
    missing: np.ndarray
    key_ids: np.ndarray
    key_list: list[str]
    key_first: np.ndarray  # index of the first line of each key
    field_line: np.ndarray
    name_ids: np.ndarray
    name_list: list[str]
    values: np.ndarray


def _columns(text: str, limits: Limits) -> _Body | None:
    """Split a body into its columns with pyarrow's string kernels; ``None`` when a line is outside the
    shape (a comment, a leading space, a field that is not a float or ``i`` integer, a name twice, …)."""
    all_lines, _n = _split(pa.array([text], pa.string()), "\n")
    nonblank = np.flatnonzero(np.asarray(pc.binary_length(all_lines).to_numpy(zero_copy_only=False)) > 0)
    if not 0 < len(nonblank) <= limits.max_records:
        return None
    lines = _take(all_lines, nonblank)
    if not _all(pc.invert(pc.match_substring_regex(lines, r"^[ #]"))):
        return None
    flat, counts = _split(lines, " ")
    if not ((counts == 2) | (counts == 3)).all():
        return None
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    has_ts = counts == 3
    ts_text = _take(flat, starts[has_ts] + 2)
    if not _all(pc.match_substring_regex(ts_text, _TIME)):
        return None
    raw_ts = np.zeros(len(lines), np.int64)
    raw_ts[has_ts] = pc.cast(ts_text, pa.int64()).to_numpy()
    pairs, per_line = _split(_take(flat, starts + 1), ",")
    kv, kv_counts = _split(pairs, "=")
    if not (kv_counts == 2).all():
        return None
    names = _take(kv, np.arange(0, len(kv), 2))
    vtext = _take(kv, np.arange(1, len(kv), 2))
    is_int = pc.match_substring_regex(vtext, _INT)
    if not _all(pc.or_(pc.match_substring_regex(vtext, _FLOAT), is_int)) or not _all(
        pc.greater(pc.binary_length(names), 0)
    ):
        return None
    numbers = pc.if_else(is_int, pc.utf8_slice_codeunits(vtext, 0, -1), vtext)
    values = np.asarray(pc.cast(numbers, pa.float64()).to_numpy(), np.float64)
    if not np.isfinite(values).all():
        return None
    field_line = np.repeat(np.arange(len(lines)), per_line)
    name_enc = pc.dictionary_encode(names)
    name_ids = np.asarray(name_enc.indices.to_numpy(), np.int64)
    name_list: list[str] = name_enc.dictionary.to_pylist()
    if (per_line > 1).any():
        combos = field_line * len(name_list) + name_ids
        if len(np.unique(combos)) != len(combos):
            return None  # a field named twice in one line: the library's rule applies
    key_enc = pc.dictionary_encode(_take(flat, starts))
    key_ids = np.asarray(key_enc.indices.to_numpy(), np.int64)
    _u, key_first = np.unique(key_ids, return_index=True)
    return _Body(
        nonblank + 1,
        raw_ts,
        ~has_ts,
        key_ids,
        key_enc.dictionary.to_pylist(),
        key_first,
        field_line,
        name_ids,
        name_list,
        values,
    )


def _column_index(
    b: _Body, key_objs: list[_Key], dev_of_key: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, tuple[str, str]]]]:
    """Each field's column — (device, (topic, attribute)), numbered in order of first appearance as line by
    line — and the columns."""
    width = len(b.name_list)
    pair = b.key_ids[b.field_line] * width + b.name_ids
    # The library hands a line's fields over last first: "first appearance" is in that order.
    seen = np.lexsort((-np.arange(len(pair)), b.field_line))
    upairs, first_seen, inverse = np.unique(pair[seen], return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)[np.argsort(seen)]
    first = seen[first_seen]
    col_index: dict[tuple[int, tuple[str, str]], int] = {}
    col_of_pair = np.empty(len(upairs), np.int64)
    for j in np.argsort(first_seen, kind="stable"):
        k, name = divmod(int(upairs[j]), width)
        key = key_objs[k]
        n = int(b.line_no[b.field_line[first[j]]])
        ck = (int(dev_of_key[k]), (key.topic, _attribute(key.measurement, b.name_list[name], n)))
        col_of_pair[j] = col_index.setdefault(ck, len(col_index))
    return col_of_pair[inverse], list(col_index)


def _assemble(
    b: _Body, precision: str, now_us: int, limits: Limits, device_tags: Sequence[str]
) -> list[DeviceWrite]:
    """One :class:`DeviceWrite` per device from a body parsed column-wise: each distinct series key is
    read by the library (measurement and tags) and mapped as line by line, then the columns are cut."""
    devices: dict[str, _Device] = {}
    key_objs: list[_Key] = []
    dev_index: dict[int, int] = {}  # id(_Device) → its number
    dev_of_key = np.empty(len(b.key_list), np.int64)
    for k, text in enumerate(b.key_list):
        n = int(b.line_no[b.key_first[k]])
        key = _new_key(line_protocol_parser.parse_line(text + " x=0"), devices, device_tags, n)
        key_objs.append(key)
        dev_of_key[k] = dev_index.setdefault(id(key.device), len(dev_index))
    col_of_field, col_keys = _column_index(b, key_objs, dev_of_key)
    dev_of_line = dev_of_key[b.key_ids]
    pos_in_dev = np.empty(len(b.line_no), np.int64)
    per_unit = _PRECISION_NS_PER_UNIT[precision]
    order = np.argsort(col_of_field, kind="stable")
    bounds = np.searchsorted(col_of_field[order], np.arange(len(col_keys) + 1))
    # Each device's lines (ascending) and columns, grouped once: a body of many devices stays linear.
    line_order = np.argsort(dev_of_line, kind="stable")
    line_bounds = np.searchsorted(dev_of_line[line_order], np.arange(len(devices) + 1))
    cols_of_dev: list[list[int]] = [[] for _ in devices]
    for c, (cd, _) in enumerate(col_keys):
        cols_of_dev[cd].append(c)
    out: list[DeviceWrite] = []
    for di, (ref, d) in enumerate(devices.items()):
        idx = line_order[line_bounds[di] : line_bounds[di + 1]]
        pos_in_dev[idx] = np.arange(len(idx))
        lines = b.line_no[idx]
        missing = b.missing[idx]
        ts = _times_us(lines, b.raw_ts[idx], missing if missing.any() else None, per_unit, now_us)
        columns = {
            col_keys[c][1]: (pos_in_dev[b.field_line[f]], b.values[f])
            for c in cols_of_dev[di]
            for f in (order[bounds[c] : bounds[c + 1]],)
        }
        out.append(DeviceWrite(ref, d.first_line, _prepared(d.first_line, lines, ts, columns, [], limits)))
    return out
