"""The column-wise line-protocol path gives exactly what the line-by-line path (every line through
``line-protocol-parser``) gives: the same devices, columns, values, timestamps, line numbers and states,
or the same error — on random bodies mixing the common shape with everything outside it (escapes,
strings, booleans, integers ``i`` and ``u``, several fields, missing timestamps, comments, precisions,
bad lines)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from sensorhub.errors import SensorhubError
from sensorhub.timeseries import lineproto
from sensorhub.timeseries.ingest import Limits

NOW_US = 1_767_225_600_000_000
LIMITS = Limits(max_records=50, max_attributes=6)
T0_NS = 1_767_225_600_000_000_000


def outcome(fn: Any, text: str, precision: str, limits: Limits = LIMITS) -> Any:
    """What a parse gives, in comparable form."""
    try:
        writes = fn(text, precision, limits)
    except SensorhubError as e:
        return ("error", type(e).__name__, e.status, e.message)
    out = []
    for w in writes:
        p = w.prepared
        out.append(
            (
                w.device,
                w.first_line,
                p.record_ts.tolist(),
                [
                    (key, c.records, c.array.tolist(), c.ts.tolist(), c.unit)
                    for key, c in p.numeric.items()  # in order: the store writes them in this order
                ],
                sorted(p.states.items()),
                sorted(p.state_topics.items()),
                p.state_count,
            )
        )
    return out


def columns(text: str, precision: str, limits: Limits = LIMITS) -> Any:
    got = lineproto._parse_columns(text, precision, NOW_US, limits, lineproto.DEFAULT_DEVICE_TAGS)
    return lineproto.parse_lines(text, precision, NOW_US, limits) if got is None else got


def lines(text: str, precision: str, limits: Limits = LIMITS) -> Any:
    return lineproto.parse_lines(text, precision, NOW_US, limits)


def took_columns(text: str, precision: str = "ns", limits: Limits = LIMITS) -> bool:
    got = lineproto._parse_columns(text, precision, NOW_US, limits, lineproto.DEFAULT_DEVICE_TAGS)
    return got is not None


def value(rng: random.Random, odd: bool) -> str:
    plain = [
        f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 6)}f}",
        str(rng.randint(-1000, 1000)),
        f"{rng.uniform(-5, 5):.3e}",
        f"{rng.randint(-(10**14), 10**14)}i",
        ".5",
        "-.25",
        "1.",
        "007",
        f"{rng.random()!r}",
    ]
    weird = ["12u", "t", "false", '"a string"', '"esc \\" q"', "nan", "inf", "1e999", "+1", "", "1_0", "0x1f"]
    return rng.choice(weird if odd else plain)


def line(rng: random.Random, odd_rate: float) -> str:
    odd = rng.random() < odd_rate
    device = rng.choice(["urn:ngsi-ld:Device:a", "urn:ngsi-ld:Device:b", "dev-c"])
    tag = rng.choice(["device", "entity_id", "host"])
    meas = rng.choice(["temperature", "cpu", "m"])
    tags = [f"{tag}={device}"]
    if rng.random() < 0.3:
        tags.append(rng.choice(["cpu=cpu0", "cpu=cpu1", "topic=env", "zone=z1"]))
    rng.shuffle(tags)
    names = rng.sample(["value", "usage", "x", "y"], rng.randint(1, 3))
    if odd and rng.random() < 0.2:
        names.append(names[0])  # a field twice
    fields = ",".join(f"{n}={value(rng, odd and rng.random() < 0.5)}" for n in names)
    key = ",".join([meas, *tags])
    if odd and rng.random() < 0.3:
        key = rng.choice([f"we\\ ird,{tags[0]}", f"{meas},{tags[0]},sp=a\\,b", f"bad.name,{tags[0]}", meas])
    ts = "" if rng.random() < 0.15 else f" {T0_NS // 10**9 * 10**9 + rng.randint(0, 10**6) * 60 * 10**9}"
    if odd and rng.random() < 0.1:
        ts = rng.choice([" 99999999999999999999", " -9999999999999999999", " 1.5", " 12 extra"])
    text = f"{key} {fields}{ts}"
    if odd and rng.random() < 0.1:
        text = rng.choice(["# a comment", "   ", "", " leading space " + text, text + "\r"])
    return text


@pytest.mark.parametrize("seed", range(60))
def test_random_bodies_give_the_same_writes_both_ways(seed: int) -> None:
    rng = random.Random(seed)
    odd_rate = [0.0, 0.02, 0.2][seed % 3]
    body = "\n".join(line(rng, odd_rate) for _ in range(rng.randint(1, 40)))
    for precision in ("ns", "us", "ms", "s"):
        assert outcome(columns, body, precision) == outcome(lines, body, precision), body


def test_the_common_shape_takes_the_column_path_and_agrees() -> None:
    rng = random.Random(7)
    roomy = Limits(max_records=50)
    taken = 0
    for _ in range(40):
        body = "\n".join(line(rng, 0.0) for _ in range(30))
        taken += took_columns(body, "ns", roomy)
        assert outcome(columns, body, "ns", roomy) == outcome(lines, body, "ns", roomy)
    # Bodies of plain numbers without escapes all go column-wise.
    assert taken == 40


@pytest.mark.parametrize(
    "body",
    [
        "m,device=urn:ngsi-ld:Device:a value=1 1\nm,device=urn:ngsi-ld:Device:a value=2 1",  # a duplicate
        "m,device=urn:ngsi-ld:Device:a v=1,w=2i,x=3.5e3 1767225600000000000",
        "m,device=urn:ngsi-ld:Device:a value=1\n\n\nm,device=urn:ngsi-ld:Device:b value=2 5",
        "m,host=h1,cpu=cpu0 u=1 1\nm,cpu=cpu0,host=h1 u=2 2",  # one topic, tags in another order
        "m,device=urn:ngsi-ld:Device:a value=1 99999999999999999",  # outside the time range
        "m,device=urn:ngsi-ld:Device:a temp.c=1 1",  # not an attribute name
        "m,zone=z value=1 1",  # no device tag
        "m,device=urn:ngsi-ld:Device:a value=1 1\nm,device=urn:ngsi-ld:Device:a value=t 2",
        "m,device=urn:ngsi-ld:Device:a a=1,b=2,c=3,d=4,e=5,f=6,g=7 1",  # too many attributes
        "m,device=urn:ngsi-ld:Device:a value=1e308 1\nm,device=urn:ngsi-ld:Device:a value=-1e308 2",
    ],
)
def test_edge_cases_agree(body: str) -> None:
    for precision in ("ns", "s"):
        assert outcome(columns, body, precision) == outcome(lines, body, precision)


def test_columns_hold_no_python_objects_per_point() -> None:
    body = "\n".join(
        f"t,device=urn:ngsi-ld:Device:a value={i}.25 {T0_NS + i * 60 * 10**9}" for i in range(40)
    )
    assert took_columns(body)
    (w,) = columns(body, "ns")
    col = w.prepared.numeric["default", "t"]
    assert col.array.dtype == np.float64 and col.array.tolist() == [i + 0.25 for i in range(40)]
    assert col.records == list(range(1, 41))
