"""Latest values of many devices rendered at once answer exactly what the per-device, per-series way
answers (SQLAlchemy rows, ``readable_windows_us`` + ``latest_point`` + ``iso`` for each series), for
organisation-, workspace- and entity-wide grants with and without time windows, token restrictions,
series without points, series of another topic and latest-state properties, on both backends.

``GET /api/devices`` reads its page and the page's series through the driver (statements compiled once
per visibility, ``sensorhub.db.driver_rows``) and renders them in one pass
(``telemetry._latest_attributes``); ``/api/devices/{id}`` and GraphQL go through
``telemetry.latest_attributes_of``. Several credentials in turn check that a statement compiled for one
visibility never answers another."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from sensorhub.authz.scope import readable_windows_us
from sensorhub.entities.models import Entity
from sensorhub.kit.time import iso, to_us
from sensorhub.timeseries import repository, telemetry
from sensorhub.timeseries.backends import store_for
from sensorhub.timeseries.repository import DeviceSelection
from sensorhub.timeseries.service import bulk_insert, get_or_create_series
from tests.builders import World, bearer

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _seed(world: World) -> None:
    world.org("acme", workspaces=("main", "other"))
    world.user("a@acme.test", "acme", "member", grant_org=False)
    pks = [world.entity("acme", "main" if i < 8 else "other", f"urn:d:{i}").pk for i in range(12)]
    with world.ctx.db.transaction() as s:
        for i, pk in enumerate(pks):
            e = s.get(Entity, pk)
            assert e is not None
            if i == 3:  # a latest-state property
                e.attrs = {"state": {"type": "Property", "value": "on", "observedAt": "2024-01-01T00:30:00Z"}}
            if i == 4:  # state with a unit; one observed outside the windows of "main"; one without a time
                level = {
                    "type": "Property",
                    "value": 3,
                    "unitCode": "MTR",
                    "observedAt": "2024-01-01T00:15:00.5Z",
                }
                mode = {"type": "Property", "value": {"a": [1, None]}, "observedAt": "2023-12-31T00:00:00Z"}
                e.attrs = {"level": level, "mode": mode, "label": {"type": "Property", "value": "x"}}
            for j, attr in enumerate(("a", "b", "c")):
                x = get_or_create_series(s, e, attr, "CEL" if attr == "a" else None)
                if i == 5 and attr == "c":
                    continue  # a series without points
                n = 60 + 7 * i + j
                step = 60_000_000 + (123_000 if j == 1 else 0) + (7 if i == 7 else 0)  # s, ms and µs forms
                ts = to_us(T0) + np.arange(n, dtype=np.int64) * step
                bulk_insert(s, x.id, ts, np.arange(n, dtype=np.float64) + i)
    # Whole workspace "other"; in "main" only minutes 10-40; one entity of "main" from minute 50 on.
    world.grant("a@acme.test", "acme", workspace="other")
    world.grant(
        "a@acme.test",
        "acme",
        workspace="main",
        time_start=T0 + timedelta(minutes=10),
        time_end=T0 + timedelta(minutes=40),
    )
    world.grant("a@acme.test", "acme", entity="urn:d:2", time_start=T0 + timedelta(minutes=50))  # fmt: skip
    topic_only = world.entity("acme", "main", "urn:d:topic").pk  # not devices: series of another topic
    world.entity("acme", "main", "urn:d:bare", type_="Bare")  # only, or no series
    with world.ctx.db.transaction() as s:
        e = s.get(Entity, topic_only)
        assert e is not None
        get_or_create_series(s, e, "a", None, "t2")


def _per_series(world: World, access: Any) -> dict[str, dict[str, Any]]:
    """The reference: every series on its own, as the route rendered them before."""
    out: dict[str, dict[str, Any]] = {}
    with world.ctx.db.session() as s:
        from sensorhub.authz.scope import visible_entities

        rows = repository.select_devices(s, visible_entities(access), DeviceSelection(), None, 100)
        series = repository.series_of_entities(s, [r.pk for r in rows])
        store = store_for(s)
        for e in rows:
            windows = readable_windows_us(access, e)
            attrs: dict[str, Any] = {}
            for x in series[e.pk]:
                p = telemetry.latest_point(store, x.id, x.last_ts, x.last_value, windows)
                attrs[x.attribute] = {
                    "value": p.value,
                    "unit": x.unit,
                    "observedAt": None if p.ts is None else iso(p.ts),
                }
            for name, prop in (e.attrs or {}).items():
                if name not in attrs and telemetry._state_visible(prop, windows):
                    attrs[name] = {
                        "value": prop["value"],
                        "unit": prop.get("unitCode"),
                        "observedAt": prop["observedAt"],
                    }
            out[e.entity_id] = attrs
    return out


def test_latest_values_of_a_page_answer_as_each_series_on_its_own(client: TestClient, world: World) -> None:
    _seed(world)
    token = world.pat("a@acme.test", ["telemetry"])
    principal = asyncio.run(world.ctx.auth.principal_of(token))
    assert principal is not None
    expected = _per_series(world, principal.access("telemetry"))
    assert len(expected) == 12
    page = client.get("/api/devices", headers=bearer(token))
    assert page.status_code == 200, page.text
    assert {d["id"]: d["attributes"] for d in page.json()} == expected
    for device_id, attrs in expected.items():
        one = client.get(f"/api/devices/{device_id}", headers=bearer(token)).json()
        assert one["attributes"] == attrs, device_id
    # The cases are not all alike: windows cut points, a series without points, state, three time forms.
    flat = [a for attrs in expected.values() for a in attrs.values()]
    stamps = {a["observedAt"] for a in flat}
    assert None in stamps and any(s and "." not in s for s in stamps)
    assert any(s and len(s.split(".")[-1]) == 4 for s in stamps)  # milliseconds: ".123Z"
    assert any(s and len(s.split(".")[-1]) == 7 for s in stamps)  # microseconds
    assert expected["urn:d:0"]["a"]["observedAt"] == "2024-01-01T00:39:00Z"  # cut by the window
    assert "state" in expected["urn:d:3"]
    assert expected["urn:d:4"]["level"] == {"value": 3, "unit": "MTR", "observedAt": "2024-01-01T00:15:00.5Z"}
    assert "mode" not in expected["urn:d:4"] and "label" not in expected["urn:d:4"]


def test_each_credential_sees_its_own_page_whoever_asked_before(client: TestClient, world: World) -> None:
    """Credentials of different reach, asked in turn (and again): each page, each slice of it (type,
    limit, offset) and each device is the per-series answer for that credential."""
    _seed(world)
    world.org("beta", workspaces=("main",))
    world.user("b@beta.test", "beta", "member")  # organisation-wide, no windows
    world.entity("beta", "main", "urn:d:0")  # the same entity id in another organisation
    with world.ctx.db.transaction() as s:
        e = s.query(Entity).filter_by(entity_id="urn:d:0").order_by(Entity.pk.desc()).first()
        assert e is not None
        x = get_or_create_series(s, e, "z", "KEL")
        bulk_insert(s, x.id, np.array([to_us(T0)], dtype=np.int64), np.array([-1.5]))
    world.user("o@acme.test", "acme", "owner")
    acme = world.workspace("acme", "main")
    tokens = {
        "member": world.pat("a@acme.test", ["telemetry"]),
        "owner": world.pat("o@acme.test", ["telemetry"]),
        "owner, workspace main": world.pat("o@acme.test", ["telemetry"], name="ws", workspaces=[acme.id]),
        "owner, one entity, a window": world.pat(
            "o@acme.test", ["telemetry"], "one", entities=["urn:d:6"], time_end=T0 + timedelta(minutes=20)
        ),
        "beta": world.pat("b@beta.test", ["telemetry"]),
        "key of main": world.api_key("acme", ["telemetry"], workspaces=("main",)),
    }
    expected: dict[str, dict[str, dict[str, Any]]] = {}
    for who, token in tokens.items():
        principal = asyncio.run(world.ctx.auth.principal_of(token))
        assert principal is not None
        expected[who] = _per_series(world, principal.access("telemetry"))
    assert len({len(v) for v in expected.values()}) > 2  # the credentials do see different pages
    assert expected["beta"] == {
        "urn:d:0": {"z": {"value": -1.5, "unit": "KEL", "observedAt": "2024-01-01T00:00:00Z"}}
    }
    assert "urn:d:topic" not in expected["owner"] and "urn:d:bare" not in expected["owner"]
    for _ in range(2):
        for who, token in tokens.items():
            h = bearer(token)
            page = client.get("/api/devices", headers=h)
            assert page.status_code == 200, page.text
            assert [(d["id"], d["attributes"]) for d in page.json()] == list(expected[who].items()), who
            ids = list(expected[who])
            sliced = client.get("/api/devices", params={"limit": 3, "offset": 2}, headers=h).json()
            assert [d["id"] for d in sliced] == ids[2:5], who
            typed = client.get("/api/devices", params={"type": "Device", "limit": 4}, headers=h).json()
            assert [d["id"] for d in typed] == ids[:4], who
            assert client.get("/api/devices", params={"type": "Bare"}, headers=h).json() == []
    for who, token in tokens.items():
        for device_id, attrs in expected[who].items():
            one = client.get(f"/api/devices/{device_id}", headers=bearer(token)).json()
            assert one["attributes"] == attrs, (who, device_id)
