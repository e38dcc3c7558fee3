"""HTTP backfill (Akenza ``POST /v3/devices/{id}/backfill``): validate everything, then store it all.

Body: one record or a list of records ``{timestamp?, topic?, data: {...}}``. A missing ``timestamp``
means now, a missing ``topic`` means ``"default"``. In ``data``:

- a number (int or float, not bool) becomes a point of the series (device, key);
- ``{"value": <number>, "unit": "<unit code>"}`` does the same and records the series' unit;
- anything else (text, bool, list, object) becomes the latest-state NGSI-LD Property ``key`` of the
  entity (``{"type": "Property", "value": …, "observedAt": …}``), replaced only by a newer observation.

Nothing is dropped silently: ``null``, NaN, ±Infinity, bad or out-of-range timestamps, attribute names
outside the grammar (:mod:`sensorhub.timeseries.names`), unknown record fields and unit changes are
refused with a 400 naming the record and the field, and nothing of the request is stored. Points are
idempotent on (series, timestamp): a repeated timestamp keeps its first value and is counted in
``duplicates``.

What one request may carry and create is bounded (:class:`Limits`, 413 naming the limit). The body is
parsed and checked entirely before the database is touched (:func:`prepare`); the entity and the
series it would create are then checked in a read transaction (no lock), and only then is the write
transaction opened (:func:`store`), which repeats those checks under the lock.
"""

from __future__ import annotations

import copy
import gc
import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from typing import Any, TypeVar

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from anyio import to_thread
from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub import metrics
from sensorhub.authz.access import Access
from sensorhub.authz.entities import visible_entity
from sensorhub.authz.scope import US_MAX, US_MIN, readable_windows_us
from sensorhub.config import (
    INGEST_MAX_ATTRIBUTES,
    INGEST_MAX_BODY_BYTES,
    INGEST_MAX_MONTHS,
    INGEST_MAX_NEW_SERIES,
    INGEST_MAX_RECORDS,
    Settings,
)
from sensorhub.db import Database
from sensorhub.entities.models import Entity, record_instances
from sensorhub.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, SensorhubError
from sensorhub.kit.time import check_points_in_range, iso, parse_iso, to_us
from sensorhub.push.events import record_points, record_state
from sensorhub.timeseries import provisioning
from sensorhub.timeseries.models import DEFAULT_TOPIC, MAX_TOPIC_LENGTH, Series
from sensorhub.timeseries.names import (
    RESERVED_NAMES,
    check_attribute_name,
    check_device_ref,
    is_attribute_name,
)
from sensorhub.timeseries.service import (
    MAX_UNIT_LENGTH,
    get_or_create_series,
    insert_new_points,
)

RECORD_FIELDS = frozenset({"timestamp", "topic", "data"})
RESERVED_KEYS = RESERVED_NAMES
ON_CONFLICT_IGNORE = "ignore"
ON_CONFLICT_OVERWRITE = "overwrite"
ON_CONFLICT = (ON_CONFLICT_IGNORE, ON_CONFLICT_OVERWRITE)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one ingest request may carry and create (settings ``SENSORHUB_INGEST_MAX_*``, whose defaults
    are the defaults here)."""

    max_body_bytes: int = INGEST_MAX_BODY_BYTES
    max_records: int = INGEST_MAX_RECORDS
    max_attributes: int = INGEST_MAX_ATTRIBUTES
    max_new_series: int = INGEST_MAX_NEW_SERIES
    max_months: int = INGEST_MAX_MONTHS

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_body_bytes=settings.ingest_max_body_bytes,
            max_records=settings.ingest_max_records,
            max_attributes=settings.ingest_max_attributes,
            max_new_series=settings.ingest_max_new_series,
            max_months=settings.ingest_max_months,
        )

    def check_body(self, size: int) -> None:
        if size > self.max_body_bytes:
            raise PayloadTooLarge(
                f"the backfill body is larger than {self.max_body_bytes} bytes "
                "(SENSORHUB_INGEST_MAX_BODY_BYTES); split it into several requests"
            )


@dataclass
class NumericColumn:
    unit: str | None = None
    unit_record: int | None = None
    records: list[int] = field(default_factory=list)  # record index of every value
    values: list[float] = field(default_factory=list)
    # Filled once everything is checked: the values and their timestamps as arrays.
    array: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))


# A series of one request: (topic, attribute).
SeriesKey = tuple[str, str]


@dataclass
class Prepared:
    numeric: dict[SeriesKey, NumericColumn] = field(default_factory=dict)
    # key → (timestamp µs, value, unit or None); the latest observation in the request wins.
    states: dict[str, tuple[int, Any, str | None]] = field(default_factory=dict)
    # key → the topic of the record the latest observation came from (absent: the default topic).
    state_topics: dict[str, str] = field(default_factory=dict)
    state_count: int = 0
    # Every non-numeric observation (key, timestamp µs, value, unit): each is an instance of the
    # attribute's history (sensorhub.entities.models.attribute_instances), not only the latest.
    observed: list[tuple[str, int, Any, str | None]] = field(default_factory=list)
    record_ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))


def parse_body(raw: bytes, max_records: int = INGEST_MAX_RECORDS) -> list[Any]:
    """The records of a backfill body. NaN/Infinity literals are accepted by the parser so that the
    validation can name the record and field they are in."""
    if not raw.strip():
        raise BadRequest(
            "the request body is empty; send a record {timestamp?, topic?, data: {...}} or a list"
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise BadRequest(f"the request body is not valid JSON: {e}") from None
    records = body if isinstance(body, list) else [body]
    if not records:
        raise BadRequest("the list of records is empty")
    if len(records) > max_records:
        raise PayloadTooLarge(
            f"at most {max_records} records per request (SENSORHUB_INGEST_MAX_RECORDS; got "
            f"{len(records)}); split the backfill"
        )
    return records


def _number(v: Any) -> float | None:
    """``v`` as a float if it is a JSON number (not a bool), else None."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        return float(v)
    except OverflowError:
        return math.inf


def _check_finite(i: int, key: str, x: float) -> None:
    if math.isnan(x):
        raise BadRequest(f"record {i}: data.{key} is NaN; send a finite number")
    if math.isinf(x):
        raise BadRequest(f"record {i}: data.{key} is infinite (or out of range); send a finite number")


def _check_unit(i: int, key: str, unit: Any) -> str:
    if not isinstance(unit, str) or not unit.strip() or len(unit) > MAX_UNIT_LENGTH:
        raise BadRequest(
            f"record {i}: data.{key}.unit must be a unit code string of 1-{MAX_UNIT_LENGTH} characters"
        )
    return unit.strip()


# Strict UTC forms parsed with numpy (length → digits of fraction): YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z.
_FAST_TS_FRACTION = {20: 0, 24: 3, 27: 6}
_DIGITS_20 = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])


def _parse_strict_utc(texts: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """µs timestamps of ``texts`` (all of one length in :data:`_FAST_TS_FRACTION`) and a mask of those
    that are certainly valid ``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z`` (year ≥ 1, real calendar day, hour
    < 24, second < 60); the others are left to the careful parsers. None if the texts are not ASCII."""
    n, width = len(texts), len(texts[0])
    raw = "".join(texts).encode("utf-8")
    if len(raw) != n * width:
        return None  # non-ASCII somewhere
    c = np.frombuffer(raw, dtype=np.uint8).reshape(n, width)
    ok = (c[:, 4] == 45) & (c[:, 7] == 45) & (c[:, 10] == 84) & (c[:, 13] == 58) & (c[:, 16] == 58)
    ok &= c[:, width - 1] == 90  # Z
    frac_digits = _FAST_TS_FRACTION[width]
    cols = _DIGITS_20
    if frac_digits:
        ok &= c[:, 19] == 46  # .
        cols = np.concatenate((cols, np.arange(20, 20 + frac_digits)))
    d = c[:, cols].astype(np.int64) - 48
    ok &= ((d >= 0) & (d <= 9)).all(axis=1)
    d[~ok] = 0
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month = d[:, 4] * 10 + d[:, 5]
    day = d[:, 6] * 10 + d[:, 7]
    hour = d[:, 8] * 10 + d[:, 9]
    minute = d[:, 10] * 10 + d[:, 11]
    second = d[:, 12] * 10 + d[:, 13]
    frac = np.zeros(n, np.int64)
    for k in range(frac_digits):
        frac = frac * 10 + d[:, 14 + k]
    micro = frac * 10 ** (6 - frac_digits)
    ok &= (
        (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (hour < 24) & (minute < 60) & (second < 60)
    )
    year = np.where(ok, year, 1970)
    month = np.where(ok, month, 1)
    day = np.where(ok, day, 1)
    first = ((year - 1970) * 12 + (month - 1)).astype("datetime64[M]")
    days = first.astype("datetime64[D]") + (day - 1)
    ok &= days.astype("datetime64[M]") == first  # e.g. 2025-02-30 is not a day
    us = days.astype(np.int64) * 86_400_000_000 + ((hour * 60 + minute) * 60 + second) * 1_000_000 + micro
    return us, ok


def _parse_times(texts: list[str | None], now_us: int) -> np.ndarray:
    """Record timestamps in µs. The common strict UTC forms are parsed with numpy, the rest in bulk
    (Arrow), record by record only to name a bad one."""
    ts = np.full(len(texts), now_us, dtype=np.int64)
    idx = list(range(len(texts))) if None not in texts else [i for i, t in enumerate(texts) if t is not None]
    if not idx:
        return ts
    rest = _parse_strict_groups(texts, _by_length(texts, idx), ts)
    if rest:
        rest.sort()
        _parse_rest(texts, rest, ts)
    return ts


def _by_length(texts: list[str | None], idx: list[int]) -> dict[int, list[int]]:
    """The indexes ``idx`` (of texts that are not None) grouped by text length."""
    lengths = list(map(len, texts)) if len(idx) == len(texts) else [len(texts[i]) for i in idx]  # type: ignore[arg-type]
    if len(set(lengths)) == 1:
        return {lengths[0]: idx}
    by_length: dict[int, list[int]] = {}
    for i, width in zip(idx, lengths, strict=True):
        by_length.setdefault(width, []).append(i)
    return by_length


def _parse_strict_groups(
    texts: list[str | None], by_length: dict[int, list[int]], ts: np.ndarray
) -> list[int]:
    """Fill ``ts`` for every text in a strict UTC form; the indexes of the others (left to the careful
    parsers)."""
    rest: list[int] = []
    for width, group in by_length.items():
        parsed = _parse_strict_utc([texts[i] for i in group]) if width in _FAST_TS_FRACTION else None  # type: ignore[misc]
        if parsed is None:
            rest.extend(group)
            continue
        us, ok = parsed
        where = np.asarray(group, dtype=np.int64)
        ts[where[ok]] = us[ok]
        if not ok.all():
            rest.extend(where[~ok].tolist())
    return rest


def _parse_rest(texts: list[str | None], rest: list[int], ts: np.ndarray) -> None:
    """Fill ``ts`` at the (sorted) indexes ``rest``: Arrow in bulk, else record by record, naming a bad
    timestamp."""
    given = [texts[i] for i in rest]
    try:
        parsed_arrow = pc.cast(pa.array(given, pa.string()), pa.timestamp("us", tz="UTC"))
        ts[rest] = pc.cast(parsed_arrow, pa.int64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Offsets missing (taken as UTC), unusual forms, or a bad one: the careful parser names it.
        for i in rest:
            ts[i] = to_us(parse_iso(str(texts[i]), f"record {i}: timestamp"))


def _check_record_times(ts: np.ndarray) -> None:
    check_points_in_range(ts, lambda i: f"record {i}: timestamp")


def _too_many_attributes(count: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"at most {limit} distinct attributes per request (SENSORHUB_INGEST_MAX_ATTRIBUTES; got "
        f"{count}{' or more' if count == limit + 1 else ''}); split the backfill"
    )


def _check_key(i: int, key: str) -> None:
    check_attribute_name(key, f"record {i}: data key")


_NUMBER_TYPES = frozenset({int, float})
_TEXT_OR_NONE = frozenset({str, type(None)})
_DICT_ONLY = frozenset({dict})


def _validate_uniform(
    records: Sequence[Any], now: datetime, max_attributes: int = INGEST_MAX_ATTRIBUTES
) -> Prepared | None:
    """The common shape, checked column-wise: every record an object of known fields whose ``data``
    has the same plain keys, all with int/float values, finite, and string (or absent) timestamps.
    Returns None for anything else, which :func:`validate` then checks record by record (and names
    the first problem); so this never accepts what the record-by-record path would refuse, and stores
    the same values."""
    envelope = _uniform_envelope(records)
    if envelope is None:
        return None
    texts, datas, topic = envelope
    shape = _uniform_shape(datas, max_attributes)
    if shape is None:
        return None
    p = Prepared()
    for key in shape:
        arr = _uniform_column(datas, key)
        if arr is None:
            return None
        p.numeric[topic, key] = NumericColumn(array=arr)
    p.record_ts = _parse_times(texts, to_us(now))
    _check_record_times(p.record_ts)
    records_index = list(range(len(records)))
    for col in p.numeric.values():
        col.records = records_index
        col.ts = p.record_ts
    return p


def _uniform_envelope(
    records: Sequence[Any],
) -> tuple[list[str | None], list[dict[str, Any]], str] | None:
    """Timestamps, data and the one topic of records that are all objects with ``data`` (an object),
    string or absent timestamps and one valid topic (named or not), and no other field; None
    otherwise."""
    n = len(records)
    if not n or not _DICT_ONLY.issuperset(map(type, records)):
        return None
    try:
        datas = [r["data"] for r in records]
    except KeyError:
        return None
    # Every record has "data"; no other fields than timestamp and topic if the key counts add up.
    with_ts = sum(map(dict.__contains__, records, repeat("timestamp")))
    extra = sum(map(len, records)) - n - with_ts
    topic = DEFAULT_TOPIC
    if extra:
        one = _the_one_topic(records, extra)
        if one is None:
            return None
        topic = one
    texts = [r.get("timestamp") for r in records]
    if not _TEXT_OR_NONE.issuperset(map(type, texts)) or not _DICT_ONLY.issuperset(map(type, datas)):
        return None
    return texts, datas, topic


def _the_one_topic(records: Sequence[dict[str, Any]], extra: int) -> str | None:
    """The topic of records whose only extra field is ``topic``, if it is valid and the same in every
    record (a record without one is on the default topic); None otherwise."""
    topics = [r["topic"] for r in records if "topic" in r]
    if len(topics) != extra:
        return None  # an unknown field
    if any(type(t) is not str or not is_topic(t) for t in topics):
        return None
    distinct = set(topics)
    if len(topics) < len(records):
        distinct.add(DEFAULT_TOPIC)
    return distinct.pop() if len(distinct) == 1 else None


def is_topic(topic: str) -> bool:
    """A topic: 1-200 characters, no control characters."""
    return 0 < len(topic) <= MAX_TOPIC_LENGTH and topic.isprintable()


def _uniform_shape(datas: list[dict[str, Any]], max_attributes: int) -> tuple[str, ...] | None:
    """The keys of the first record's data if every record's data has as many, all plain attribute
    names (that they are the same keys is checked column by column); None otherwise."""
    shape = tuple(datas[0])
    if not shape or len(shape) > max_attributes or not all(map(is_attribute_name, shape)):
        return None
    if set(map(len, datas)) != {len(shape)}:
        return None  # with every key of the first record (checked below), the same keys
    return shape


def _uniform_column(datas: list[dict[str, Any]], key: str) -> np.ndarray | None:
    """The values of ``key`` in every record, if all are finite int/float; None otherwise."""
    try:
        values = [d[key] for d in datas]
    except KeyError:
        return None
    if not _NUMBER_TYPES.issuperset(map(type, values)):
        return None
    try:
        arr = np.asarray(values, dtype=np.float64)
    except OverflowError:
        return None
    return arr if np.isfinite(arr).all() else None


def validate(records: Sequence[Any], now: datetime, max_attributes: int = INGEST_MAX_ATTRIBUTES) -> Prepared:
    """Check every record; raise :class:`BadRequest` naming a bad record and field (and
    :class:`PayloadTooLarge` beyond ``max_attributes`` distinct data keys).

    The common shape (numbers under plain keys) takes a fast path: timestamps are parsed in bulk and
    finiteness is checked with numpy, so a 5,000-record request costs a few milliseconds. Requests in
    which every record has the same numeric keys are checked column-wise (:func:`_validate_uniform`)."""
    fast = _validate_uniform(records, now, max_attributes)
    if fast is not None:
        return fast
    return _validate_each(records, now, max_attributes)


# A non-numeric value of the record-by-record path: (record, key, value, unit, topic).
_Observation = tuple[int, str, Any, str | None, str]


def _validate_each(
    records: Sequence[Any], now: datetime, max_attributes: int = INGEST_MAX_ATTRIBUTES
) -> Prepared:
    """:func:`validate` record by record: any shape, and the first problem named."""
    p = Prepared()
    texts: list[str | None] = []
    observations: list[_Observation] = []
    good_keys: set[str] = set()
    numeric = p.numeric
    for i, rec in enumerate(records):
        # A good record is recognised inline (this loop runs per record); for any other, _check_record
        # names its first problem in the documented order.
        if type(rec) is not dict or not RECORD_FIELDS.issuperset(rec):
            _check_record(i, rec)
        ts_raw = rec.get("timestamp")
        data = rec.get("data")
        if (
            (ts_raw is not None and type(ts_raw) is not str)
            or type(data) is not dict
            or not data
            or ("topic" in rec and (type(rec["topic"]) is not str or not is_topic(rec["topic"])))
        ):
            _check_record(i, rec)
        texts.append(ts_raw)
        topic = rec.get("topic", DEFAULT_TOPIC)
        for key, v in data.items():
            if key not in good_keys:
                _admit_key(i, key, good_keys, max_attributes)
            # Plain numbers, by far the most common values, stay inline: this loop is per value.
            tv = type(v)
            if tv is float or tv is int:
                col = numeric.get((topic, key))
                if col is None:
                    col = numeric[topic, key] = NumericColumn()
                col.records.append(i)
                col.values.append(v)
            else:
                _add_value(p, observations, i, key, v, topic)
    _finish_columns(numeric)
    p.record_ts = _parse_times(texts, to_us(now))
    _check_record_times(p.record_ts)
    _apply_record_times(p, observations)
    return p


def _check_record(i: int, rec: Any) -> None:
    """Raise :class:`BadRequest` for the first problem of record ``i``'s fields, if it has any."""
    if type(rec) is not dict:
        raise BadRequest(f"record {i}: must be an object {{timestamp?, topic?, data: {{...}}}}")
    for k in rec:
        if k not in RECORD_FIELDS:
            raise BadRequest(f"record {i}: unknown field '{k}'; a record has timestamp, topic and data")
    ts_raw = rec.get("timestamp")
    if ts_raw is not None and type(ts_raw) is not str:
        raise BadRequest(f"record {i}: timestamp must be an ISO 8601 string such as 2024-01-01T00:00:00Z")
    if "topic" in rec:
        topic = rec["topic"]
        if not isinstance(topic, str) or not is_topic(topic):
            raise BadRequest(
                f"record {i}: topic must be a non-empty string of at most {MAX_TOPIC_LENGTH} printable "
                "characters"
            )
    data = rec.get("data")
    if type(data) is not dict:
        raise BadRequest(f"record {i}: data must be an object of attribute values")
    if not data:
        raise BadRequest(f"record {i}: data is empty")


def _admit_key(i: int, key: str, good_keys: set[str], max_attributes: int) -> None:
    """Check a data key seen for the first time, and the number of distinct keys."""
    _check_key(i, key)
    good_keys.add(key)
    if len(good_keys) > max_attributes:
        raise _too_many_attributes(len(good_keys), max_attributes)


def _add_value(
    p: Prepared, observations: list[_Observation], i: int, key: str, v: Any, topic: str = DEFAULT_TOPIC
) -> None:
    """A value that is not a plain int/float: a ``{"value": <number>, "unit": …}`` point, or a
    latest-state property (a unit-tagged non-numeric value is kept as a property with its unit)."""
    if v is None:
        raise BadRequest(f"record {i}: data.{key} is null; omit the key or send a value")
    unit: str | None = None
    x = _number(v)
    if x is None and isinstance(v, dict) and "value" in v and set(v) <= {"value", "unit"}:
        if "unit" in v:
            unit = _check_unit(i, key, v["unit"])
        if v["value"] is None:
            raise BadRequest(f"record {i}: data.{key}.value is null; omit the key or send a value")
        x = _number(v["value"])
        if x is None:
            v = v["value"]
    if x is None:
        # Not a number (so not a float either: _number accepts every float): a property.
        observations.append((i, key, v, unit, topic))
        p.state_count += 1
        return
    _check_finite(i, key, x)
    col = p.numeric.setdefault((topic, key), NumericColumn())
    if unit is not None:
        if col.unit is not None and col.unit != unit:
            raise BadRequest(
                f"record {i}: data.{key}.unit '{unit}' differs from '{col.unit}' in record "
                f"{col.unit_record}; one attribute has one unit"
            )
        col.unit, col.unit_record = unit, i
    col.records.append(i)
    col.values.append(x)


def _finish_columns(numeric: dict[SeriesKey, NumericColumn]) -> None:
    """Each column's values as a float64 array, refusing the first non-finite one (by record)."""
    for (_topic, key), col in numeric.items():
        try:
            vals = np.asarray(col.values, dtype=np.float64)
        except OverflowError:
            vals = np.asarray([_number(v) for v in col.values], dtype=np.float64)
        bad = ~np.isfinite(vals)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            _check_finite(col.records[j], key, float(vals[j]))
        col.array = vals


def _apply_record_times(p: Prepared, observations: list[_Observation]) -> None:
    """Each column's timestamps, and the latest observation per key (by timestamp; on a tie the later
    record)."""
    for col in p.numeric.values():
        col.ts = p.record_ts[np.asarray(col.records, dtype=np.int64)]
    for i, key, v, unit, topic in observations:
        t = int(p.record_ts[i])
        p.observed.append((key, t, v, unit))
        prev = p.states.get(key)
        if prev is None or t >= prev[0]:
            p.states[key] = (t, v, unit)
            p.state_topics[key] = topic


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while the JSON body is parsed and checked: the parser allocates two
    containers per record, which would otherwise trigger a dozen collections per request, full ones
    over the whole server heap among them (measured: ~13 ms of a 5,000-record request). The records
    contain no cycles and are freed by reference counting as soon as they are checked. The collector
    is switched back on only if it was on when the pause began (so one that was off stays off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_write_windows(access: Access, e: Any, p: Prepared) -> None:
    windows = readable_windows_us(access, e)
    if windows != [(US_MIN, US_MAX)]:
        ts = p.record_ts
        ok = np.zeros(len(ts), bool)
        for lo, hi in windows:
            ok |= (ts >= lo) & (ts < hi)
        if not ok.all():
            bad = iso(int(ts[~ok][0]))
            raise Forbidden(f"timestamp {bad} is outside the time window this credential may write to")


def prepare(raw: bytes, now: datetime, limits: Limits) -> Prepared:
    """Parse and check a whole backfill body, without touching the database: everything that can be
    refused from the body alone is refused here, before any transaction (let alone a lock) exists."""
    limits.check_body(len(raw))
    with _gc_paused():
        records = parse_body(raw, limits.max_records)
        p = validate(records, now, limits.max_attributes)
        del records  # the parsed JSON goes now, before the collector could see it
    check_prepared(p, limits)
    return p


def check_prepared(p: Prepared, limits: Limits) -> None:
    """What a validated request may not exceed as a whole: distinct attributes and calendar months."""
    names = {key for _topic, key in p.numeric} | set(p.states)
    if len(names) > limits.max_attributes:
        raise _too_many_attributes(len(names), limits.max_attributes)
    months = _distinct_months(p.record_ts)
    if months > limits.max_months:
        # Each calendar month is a partition on PostgreSQL: a request spread over centuries would create
        # thousands of tables under one lock.
        raise PayloadTooLarge(
            f"the records span {months} calendar months; at most {limits.max_months} per request "
            "(SENSORHUB_INGEST_MAX_MONTHS): split the backfill by time"
        )


def _distinct_months(ts_us: np.ndarray) -> int:
    if ts_us.size == 0:
        return 0
    months = np.unique(ts_us.astype("datetime64[us]").astype("datetime64[M]"))
    return int(months.size)


def check_target(
    s: Session,
    access: Access,
    device_ref: str,
    p: Prepared,
    limits: Limits,
    writer: provisioning.Writer | None = None,
    *,
    create: bool = False,
    workspaces: provisioning.Workspaces | None = None,
) -> tuple[Entity, dict[SeriesKey, Series]]:
    """The device and its existing series, once everything the database decides is checked: the device
    is visible, the points lie in the credential's write windows, units agree with the stored ones and
    the request creates at most ``limits.max_new_series`` series. Run in a read transaction first (a
    refused request never takes the write lock), then again inside the write transaction.

    A device that is not found is auto-provisioned for ``writer`` where a workspace allows it
    (:mod:`sensorhub.timeseries.provisioning`): with ``create`` (the write transaction) it is created,
    otherwise the entity it would be is returned unsaved. A multi-device write passes the
    ``workspaces`` its pass looks up once for all its devices."""
    ref = check_device_ref(device_ref)
    try:
        entity = visible_entity(s, access, ref)
    except NotFound:
        planned = provisioning.plan(s, access, writer, ref, workspaces) if writer is not None else None
        if planned is None:
            raise
        entity = provisioning.pending_entity(planned)
        _check_write_windows(access, entity, p)
        _check_new_series(entity, p, {}, limits)
        if create:
            assert writer is not None
            entity = provisioning.create(s, access, writer, planned)
        return entity, {}
    _check_write_windows(access, entity, p)
    existing = {
        (x.topic, x.attribute): x for x in s.scalars(select(Series).where(Series.entity_pk == entity.pk))
    }
    _check_new_series(entity, p, existing, limits)
    return entity, existing


def _check_new_series(entity: Entity, p: Prepared, existing: dict[SeriesKey, Series], limits: Limits) -> None:
    for (topic, key), col in p.numeric.items():
        x = existing.get((topic, key))
        if x is not None and col.unit is not None and x.unit is not None and x.unit != col.unit:
            raise BadRequest(
                f"record {col.unit_record}: data.{key}.unit '{col.unit}' differs from the stored unit '{x.unit}'"
            )
    new = sum(1 for key in p.numeric if key not in existing)
    if new > limits.max_new_series:
        raise PayloadTooLarge(
            f"this request would create {new} new series on '{entity.entity_id}'; at most "
            f"{limits.max_new_series} per request (SENSORHUB_INGEST_MAX_NEW_SERIES): send new attributes "
            "in smaller batches"
        )


def check_on_conflict(value: str | None) -> str:
    """``on_conflict`` of a write: ``ignore`` (the default: a point already stored at a timestamp keeps
    its value, the new one is counted in ``duplicates``) or ``overwrite`` (the new value replaces it)."""
    if value is None:
        return ON_CONFLICT_IGNORE
    if value not in ON_CONFLICT:
        raise BadRequest(f"unknown on_conflict '{value[:40]}'; use {' or '.join(ON_CONFLICT)}")
    return value


def _state(ts: int, value: Any, unit: str | None) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": "Property", "value": value, "observedAt": iso(ts)}
    if unit is not None:
        prop["unitCode"] = unit
    return prop


def _store_states(s: Session, entity: Entity, p: Prepared) -> None:
    """The request's latest-state properties onto the entity (each unless the stored one is newer), and
    every observation as an instance of the attribute's history: the ones that become the entity's
    state are recorded by the entity write itself, the others (earlier in the request, or older than
    the stored state) here, in the same transaction."""
    attrs = dict(entity.attrs or {})
    stored: set[tuple[str, int]] = set()
    for key, (ts, value, unit) in p.states.items():
        old = attrs.get(key)
        if isinstance(old, dict) and "datasetId" in old:
            # A multi-attribute without a default instance: the state becomes its default instance, the
            # one with a datasetId stays one of its other instances (entities.models.Entity.datasets).
            entity.datasets = {**(entity.datasets or {}), key: [old, *(entity.datasets or {}).get(key, [])]}
            old = None
        old_at = old.get("observedAt") if isinstance(old, dict) else None
        if isinstance(old_at, str):
            try:
                if to_us(parse_iso(old_at, "observedAt")) > ts:
                    continue  # the stored observation is newer
            except BadRequest:
                pass
        prop = _state(ts, value, unit)
        stored.add((key, ts))
        attrs[key] = prop
        topic = p.state_topics.get(key, DEFAULT_TOPIC)
        record_state(s, entity=entity, attribute=key, ts_us=ts, value=value, unit=unit, topic=topic)
    entity.attrs = attrs
    s.flush()  # an entity created by this request has its key now
    record_instances(
        s, entity, [(key, t, _state(t, v, unit)) for key, t, v, unit in p.observed if (key, t) not in stored]
    )


def store(
    s: Session,
    access: Access,
    device_ref: str,
    p: Prepared,
    limits: Limits,
    on_conflict: str = "ignore",
    writer: provisioning.Writer | None = None,
    *,
    workspaces: provisioning.Workspaces | None = None,
) -> dict[str, int]:
    """Store a prepared backfill for one device in the session's (write) transaction; all or nothing
    (the caller commits). With ``on_conflict="overwrite"`` stored points at the same timestamps are
    replaced and counted in ``overwritten`` (rollups are recomputed for the buckets touched). An unknown
    device is auto-provisioned for ``writer`` where its workspace allows it."""
    entity, existing = check_target(
        s, access, device_ref, p, limits, writer, create=True, workspaces=workspaces
    )
    overwrite = on_conflict == ON_CONFLICT_OVERWRITE
    accepted = duplicates = 0
    for (topic, key), col in p.numeric.items():
        series = existing.get((topic, key)) or get_or_create_series(s, entity, key, col.unit, topic)
        if col.unit is not None and series.unit is None:
            series.unit = col.unit
        new_ts, new_vals, d = insert_new_points(s, series.id, col.ts, col.array, overwrite=overwrite)
        # The outbox: what was accepted, in this transaction (sensorhub.push.events), on every topic.
        record_points(
            s, entity=entity, attribute=key, ts_us=new_ts, values=new_vals, unit=series.unit, topic=topic
        )
        accepted += len(new_ts) - (d if overwrite else 0)
        duplicates += d
    if p.states:
        _store_states(s, entity, p)
        accepted += p.state_count
    s.flush()
    if overwrite:
        return {"accepted": accepted, "duplicates": 0, "overwritten": duplicates}
    return {"accepted": accepted, "duplicates": duplicates}


def rephrased(e: SensorhubError, prefix: str) -> SensorhubError:
    """``e`` (same class, status and headers) with its message prefixed, e.g. by the line or record
    of a multi-device write it concerns."""
    out = copy.copy(e)
    out.message = f"{prefix}: {e.message}"
    out.args = (out.message,)
    return out


@dataclass(frozen=True, slots=True)
class DeviceBatch:
    """One device's share of a multi-device write; ``where`` names it in errors (``line 3``,
    ``record 7``)."""

    device: str
    where: str
    prepared: Prepared


def check_targets(
    s: Session,
    access: Access,
    batches: Sequence[DeviceBatch],
    limits: Limits,
    writer: provisioning.Writer | None = None,
) -> None:
    """:func:`check_target` for each device of a multi-device write."""
    workspaces = provisioning.Workspaces(s, access)
    for b in batches:
        try:
            check_target(s, access, b.device, b.prepared, limits, writer, workspaces=workspaces)
        except SensorhubError as e:
            raise rephrased(e, b.where) from None


def store_batches(
    s: Session,
    access: Access,
    batches: Sequence[DeviceBatch],
    limits: Limits,
    on_conflict: str = "ignore",
    writer: provisioning.Writer | None = None,
) -> dict[str, int]:
    """Store a multi-device write (line protocol, gateways) in the session's transaction: all devices
    or none (the caller commits). The counts are summed over the devices."""
    total: dict[str, int] = {}
    workspaces = provisioning.Workspaces(s, access)
    for b in batches:
        try:
            result = store(
                s, access, b.device, b.prepared, limits, on_conflict, writer, workspaces=workspaces
            )
        except SensorhubError as e:
            raise rephrased(e, b.where) from None
        for k, v in result.items():
            total[k] = total.get(k, 0) + v
    return total


_P = TypeVar("_P")  # a write's parsed points (one device's, or a multi-device write's)


async def write_off_loop(
    db: Database,
    parse: Callable[[], _P],
    check: Callable[[Session, _P], object],
    store: Callable[[Session, _P], dict[str, int]],
) -> dict[str, int]:
    """How a write of points over HTTP runs, off the event loop: everything parsed and checked first
    (``parse``, no database); then what the database decides (``check``: visible device, units, new
    series) in a read transaction, so that a refused request never waits for or holds the write lock;
    only then ``store`` in the write transaction, which repeats those checks under the lock. The
    points stored and skipped are counted in the ingest metrics."""

    def work() -> dict[str, int]:
        parsed = parse()
        with db.session() as s:
            check(s, parsed)
        with db.transaction() as s:
            return store(s, parsed)

    result = await to_thread.run_sync(work)
    count_stored(result)
    return result


def count_stored(result: dict[str, int]) -> None:
    """The points a write stored and skipped as duplicates, counted in the ingest metrics: once per
    HTTP request (:func:`write_off_loop`), once per MQTT message (``mqtt.broker.GroupWriter.store``)."""
    metrics.ingest_points.inc(result["accepted"])
    metrics.ingest_duplicates.inc(result["duplicates"])


def backfill(
    s: Session, access: Access, device_ref: str, raw: bytes, now: datetime, limits: Limits | None = None
) -> dict[str, int]:
    """:func:`prepare` and :func:`store` in one session (for callers that hold a write session already)."""
    limits = limits or Limits()
    return store(s, access, device_ref, prepare(raw, now, limits), limits)
