"""The backfill fast paths give what the careful record-by-record paths give: the same stored data,
and the same 400 message for a bad request.

- :func:`ingest._validate_uniform` (column-wise checks of the common shape) against
  :func:`ingest._validate_each` (record by record), on random requests, good and bad;
- :func:`ingest._parse_times` (numpy for ``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z``) against the Arrow +
  :func:`parse_iso` parser it sits in front of, on random mixes of timestamp forms, valid and not;
- over HTTP on both backends: a request stored through the fast path reads back exactly like the same
  request forced through the slow path.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fastapi.testclient import TestClient

from sensorhub.errors import BadRequest
from sensorhub.kit.time import parse_iso, to_us
from sensorhub.timeseries import ingest
from tests.builders import World, bearer

NOW = datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
DEV = "urn:ngsi-ld:Device:fast"


def reference_parse_times(texts: list[str | None], now_us: int) -> np.ndarray:
    """The parser before the numpy fast path: Arrow in bulk, record by record to name a bad one."""
    ts = np.full(len(texts), now_us, dtype=np.int64)
    idx = [i for i, t in enumerate(texts) if t is not None]
    if not idx:
        return ts
    try:
        parsed = pc.cast(pa.array([texts[i] for i in idx], pa.string()), pa.timestamp("us", tz="UTC"))
        ts[idx] = pc.cast(parsed, pa.int64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for i in idx:
            ts[i] = to_us(parse_iso(str(texts[i]), f"record {i}: timestamp"))
    return ts


def outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except BadRequest as e:
        return ("error", e.message if hasattr(e, "message") else str(e))


def random_instant(rng: random.Random) -> datetime:
    return datetime(1, 1, 1, tzinfo=UTC) + timedelta(
        days=rng.randrange(3_652_058), seconds=rng.randrange(86_400), microseconds=rng.randrange(1_000_000)
    )


def ymd_hms(t: datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def valid_timestamp(rng: random.Random) -> str:
    t = (
        random_instant(rng)
        if rng.random() < 0.2
        else datetime(2024, 1, 1, tzinfo=UTC)
        + timedelta(seconds=rng.randrange(10**8), microseconds=rng.randrange(1_000_000))
    )
    base = ymd_hms(t)
    form = rng.randrange(9)
    if form == 0:
        return base + "Z"
    if form == 1:
        return base + f".{t.microsecond // 1000:03d}Z"
    if form == 2:
        return base + f".{t.microsecond:06d}Z"
    if form == 3:
        return base + f".{t.microsecond // 10000:02d}Z"  # two digits: not a fast form
    if form == 4:
        return base + "+01:00"
    if form == 5:
        return base  # no zone: UTC
    if form == 6:
        return base + "z"
    if form == 7:
        return base[:10]
    return base + f".{t.microsecond:06d}+00:00"


def invalid_timestamp(rng: random.Random) -> str:
    return rng.choice(
        [
            "2025-02-30T00:00:00Z",
            "2024-02-30T10:00:00.000Z",
            "2023-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-00-10T00:00:00Z",
            "2025-01-00T00:00:00Z",
            "2025-04-31T00:00:00.000000Z",
            "2025-01-01T24:00:00Z",
            "2025-01-01T23:60:00Z",
            "2025-01-01T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "2025-01-01 00:00:00Z",
            "2025-01-01T00:00:00.1234Z",
            "2025-01-01T00:00:0aZ",
            "2025-01-01T00:00:00.00aZ",
            "2025/01/01T00:00:00Z",
            "2025-01-01T00:00:00ZZ",
            "２０２５-01-01T00:00:00Z",
            "2025-01-01T00:00:00é",
            "yesterday",
            "",
            " 2025-01-01T00:00:0Z",
        ]
    )


def test_strict_forms_match_the_careful_parser() -> None:
    rng = random.Random(7)
    texts = []
    for _ in range(3000):
        t = random_instant(rng)
        base = ymd_hms(t)
        texts += [base + "Z", base + f".{t.microsecond // 1000:03d}Z", base + f".{t.microsecond:06d}Z"]
    got = ingest._parse_times(list(texts), 0)
    assert got.tolist() == [to_us(parse_iso(t, "t")) for t in texts]
    assert got.tolist() == reference_parse_times(list(texts), 0).tolist()


@pytest.mark.parametrize("seed", range(40))
def test_random_mixes_of_timestamp_forms_parse_like_before(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([1, 2, 5, 50, 300])
    texts: list[str | None] = []
    for _ in range(n):
        r = rng.random()
        texts.append(
            None
            if r < 0.1
            else invalid_timestamp(rng)
            if r < 0.1 + 0.02 * (seed % 3)
            else valid_timestamp(rng)
        )
    now_us = to_us(NOW)
    got, want = outcome(ingest._parse_times, texts, now_us), outcome(reference_parse_times, texts, now_us)
    if want[0] == "ok":
        assert got[0] == "ok", got
        assert got[1].tolist() == want[1].tolist()
    else:
        assert got == want


def random_value(rng: random.Random, bad: bool) -> Any:
    if bad:
        return rng.choice(
            [
                float("nan"),
                float("inf"),
                -float("inf"),
                10**400,
                None,
                True,
                "text",
                [1],
                {"value": 1, "unit": "CEL"},
            ]
        )
    return rng.choice([rng.uniform(-1e6, 1e6), rng.randrange(-(10**6), 10**6), 2**63 + 1, 0, -0.0, 1e308])


def random_request(rng: random.Random) -> list[Any]:
    """Mostly the common shape; sometimes one record (or field) spoilt in one of many ways."""
    n = rng.choice([1, 3, 20, 200])
    keys = rng.sample(["temperature", "humidity", "co2", "t", "x_1"], rng.randrange(1, 4))
    with_ts = rng.random() < 0.8
    start = datetime(2025, 1, 1, tzinfo=UTC)
    records: list[Any] = []
    for i in range(n):
        rec: dict[str, Any] = {}
        if with_ts or rng.random() < 0.1:
            t = start + timedelta(seconds=rng.randrange(10**6) if rng.random() < 0.3 else i * 60)
            rec["timestamp"] = (
                t.strftime("%Y-%m-%dT%H:%M:%SZ") if rng.random() < 0.9 else valid_timestamp(rng)
            )
        if rng.random() < 0.1:
            rec["topic"] = rng.choice(["default", "uplink", "x" * 10])
        rec["data"] = {k: random_value(rng, False) for k in keys}
        records.append(rec)
    if rng.random() < 0.6:
        i = rng.randrange(n)
        rec = records[i]
        how = rng.randrange(16)
        if how == 0:
            rec["data"][rng.choice(keys)] = random_value(rng, True)
        elif how == 1:
            rec["timestamp"] = invalid_timestamp(rng)
        elif how == 2:
            rec["timestamp"] = rng.choice([1704067200, None, ["2025-01-01"], 1.5])
        elif how == 3:
            rec["topic"] = rng.choice(["", 5, "y" * 201, None])
        elif how == 4:
            rec["timstamp"] = "2025-01-01T00:00:00Z"
        elif how == 5:
            del rec["data"]
        elif how == 6:
            rec["data"] = {}
        elif how == 7:
            rec["data"] = rng.choice([[1], "x", 1, None])
        elif how == 8:
            rec["data"][rng.choice(["id", "type", "location", "", "k" * 201])] = 1
        elif how == 9:
            rec["data"]["extra"] = 1.0  # another key: not the uniform shape, still valid
        elif how == 10:
            del rec["data"][keys[0]]
            rec["data"]["other"] = 2  # same number of keys, not the same keys
        elif how == 11:
            records[i] = rng.choice([1, "x", None, [rec]])
        elif how == 12:
            rec["data"] = {keys[0]: {"value": 3, "unit": "CEL"}}
        elif how == 13:
            rec["data"] = dict(reversed(list(rec["data"].items())))  # same keys, other order
        elif how == 14:
            rec["data"]["status"] = "ok"  # a property
        else:
            records.append(dict(rec))  # a repeated record
    return records


def same_prepared(a: ingest.Prepared, b: ingest.Prepared) -> None:
    assert list(a.numeric) == list(b.numeric)
    for key, x in a.numeric.items():
        y = b.numeric[key]
        assert (x.unit, x.unit_record) == (y.unit, y.unit_record)
        assert x.ts.tolist() == y.ts.tolist()
        assert x.array.tobytes() == y.array.tobytes()  # bit for bit, -0.0 included
    assert a.states == b.states
    assert a.state_count == b.state_count
    assert a.record_ts.tolist() == b.record_ts.tolist()


@pytest.mark.parametrize("seed", range(300))
def test_validate_fast_path_equals_record_by_record(seed: int) -> None:
    records = random_request(random.Random(seed))
    got, want = outcome(ingest.validate, records, NOW), outcome(ingest._validate_each, records, NOW)
    assert got[0] == want[0], (got, want)
    if want[0] == "ok":
        same_prepared(got[1], want[1])
    else:
        assert got[1] == want[1]


def test_uniform_requests_take_the_fast_path() -> None:
    records = [
        {"timestamp": f"2025-01-01T00:{i:02d}:00Z", "topic": "up", "data": {"a": i, "b": i / 3}}
        for i in range(60)
    ] + [{"topic": "up", "data": {"a": 1, "b": 2.5}}]
    assert ingest._validate_uniform(records, NOW) is not None
    for spoilt in (
        {"data": {"a": 1, "b": 2.5}},  # another topic (the default one): other series
        {"topic": "down", "data": {"a": 1, "b": 2.5}},
        {"data": {"a": 1, "b": float("nan")}},
        {"data": {"a": 1, "c": 2}},
        {"data": {"a": 1}},
        {"data": {"a": 1, "b": True}},
        {"data": {"a": 1, "b": 2}, "extra": 1},
        {"timestamp": 5, "data": {"a": 1, "b": 2}},
    ):
        assert ingest._validate_uniform([*records, spoilt], NOW) is None


def test_fast_path_body_stores_what_the_slow_path_stores(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.org("acme")
    world.user("a@acme.test", "acme", "member")
    world.entity("acme", "main", DEV)
    world.entity("acme", "main", DEV + "-slow")
    token = world.pat("a@acme.test")
    rng = random.Random(3)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    body = [
        {
            "timestamp": (
                start + timedelta(seconds=rng.randrange(86_400), milliseconds=rng.randrange(1000))
            ).strftime("%Y-%m-%dT%H:%M:%S.%f")[: rng.choice([19, 23, 26])]
            + "Z",
            "data": {"temperature": rng.uniform(-20, 40), "count": rng.randrange(100)},
        }
        for _ in range(500)
    ]
    body.append(dict(body[0]))  # a duplicate timestamp
    fast = client.post(f"/v3/devices/{DEV}/backfill", json=body, headers=bearer(token))
    monkeypatch.setattr(ingest, "_validate_uniform", lambda *args: None)
    monkeypatch.setattr(ingest, "_FAST_TS_FRACTION", {})
    slow = client.post(f"/v3/devices/{DEV}-slow/backfill", json=body, headers=bearer(token))
    assert fast.status_code == slow.status_code == 200
    assert fast.json() == slow.json()
    assert fast.json()["duplicates"] >= 2

    def read(device: str) -> Any:
        r = client.get(
            "/api/timeseries/v2/entities/" + device + "/data",
            params={
                "start_time": "2025-01-01T00:00:00Z",
                "end_time": "2025-01-03T00:00:00Z",
                "resolution": 100000,
            },
            headers=bearer(token),
        )
        assert r.status_code == 200, r.text
        return r.json()

    assert read(DEV)["timestamps"] == read(DEV + "-slow")["timestamps"]
    assert read(DEV)["attributes"] == read(DEV + "-slow")["attributes"]


@pytest.mark.parametrize(
    ("spoilt", "message"),
    [
        (
            {"timestamp": "2025-02-30T00:00:00Z", "data": {"t": 1}},
            "record 7: timestamp '2025-02-30T00:00:00Z'",
        ),
        ({"timestamp": "2025-01-01T00:00:00Z", "data": {"t": float("inf")}}, "record 7: data.t is infinite"),
        ({"timestamp": "2025-01-01T00:00:00Z", "data": {"t": True}}, None),
    ],
)
def test_bad_record_in_a_uniform_request_is_named_and_nothing_is_stored(
    client: TestClient, world: World, spoilt: dict[str, Any], message: str | None
) -> None:
    world.org("acme")
    world.user("a@acme.test", "acme", "member")
    world.entity("acme", "main", DEV)
    token = world.pat("a@acme.test")
    body = [{"timestamp": f"2025-01-01T00:{i:02d}:00Z", "data": {"t": i}} for i in range(7)]
    r = client.post(
        f"/v3/devices/{DEV}/backfill",
        content=json.dumps([*body, spoilt]),  # json.dumps writes Infinity
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    if message is None:  # a bool is a property, not a point; the request is fine (fast path not taken)
        assert r.status_code == 200, r.text
        return
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]
    assert client.get("/api/sensors", headers=bearer(token)).json() == []
