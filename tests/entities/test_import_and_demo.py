"""`sensorhub entities import` (all or nothing, errors name the element) and the demo data set."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from sensorhub import demo_data
from sensorhub.accounts import service as accounts
from sensorhub.cli import app as cli_app
from sensorhub.config import Settings
from sensorhub.entities.models import Entity
from sensorhub.entities.service import import_entities
from sensorhub.errors import BadRequest, Conflict
from sensorhub.timeseries.models import Series, measurements
from tests.builders import World, bearer

MIXED = [
    {
        "id": "urn:ngsi-ld:AgriParcel:p1",
        "type": "AgriParcel",
        "area": {"type": "Property", "value": 2.5, "unitCode": "HAR"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}},
    },
    {
        "id": "urn:ngsi-ld:AgriParcel:p2",
        "type": "AgriParcel",
        "area": 3.0,
        "location": {"type": "Point", "coordinates": [3, 4]},
    },
]


def _import(world: World, items: object, upsert: bool = False) -> tuple[int, int]:
    with world.ctx.db.transaction() as s:
        o = accounts.get_org(s, "acme")
        r = import_entities(s, o, accounts.get_workspace(s, o, "farm"), items, upsert=upsert)
    return r.created, r.updated


def _count(world: World) -> int:
    with world.ctx.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Entity)) or 0)


def test_import_normalized_and_key_values_all_or_nothing(client: TestClient, world: World) -> None:
    world.org("acme", ("farm",))
    world.user("o@acme.test", "acme", "owner")
    assert _import(world, MIXED) == (2, 0)
    token = world.pat("o@acme.test", ["entities"])
    got = client.get("/ngsi-ld/v1/entities?type=AgriParcel", headers=bearer(token)).json()
    assert got[1]["area"] == {"type": "Property", "value": 3.0}
    assert got[1]["location"] == {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [3, 4]}}

    bad = [{"id": "urn:ngsi-ld:X:1", "type": "X"}, {"id": "urn:ngsi-ld:X:2", "type": "X"}, {"type": "X"}]
    with pytest.raises(BadRequest, match=r"^element 2: id must be"):
        _import(world, bad)
    with pytest.raises(BadRequest, match=r"element 1: id 'urn:ngsi-ld:X:1' repeats element 0"):
        _import(world, [bad[0], bad[0]])
    with pytest.raises(Conflict, match=r"element 1: entity 'urn:ngsi-ld:AgriParcel:p1' already exists"):
        _import(world, [bad[0], MIXED[0]])
    with pytest.raises(BadRequest, match="JSON array"):
        _import(world, {"id": "urn:x:1"})
    assert _count(world) == 2  # nothing of the failed imports was written
    assert _import(world, [dict(MIXED[0], area=9), bad[0]], upsert=True) == (1, 1)
    got = client.get(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:AgriParcel:p1?options=keyValues", headers=bearer(token)
    )
    assert got.json()["area"] == 9


def test_cli_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("SENSORHUB_DATA_DIR", str(data))
    runner = CliRunner()
    assert "entities" in runner.invoke(cli_app, ["--help"]).output
    assert "import" in runner.invoke(cli_app, ["entities", "--help"]).output
    r = runner.invoke(
        cli_app,
        [
            "admin",
            "create-user",
            "--email",
            "o@acme.test",
            "--password",
            "long-enough-pw",
            "--org",
            "acme",
            "--role",
            "owner",
            "--workspace",
            "farm",
            "--data-dir",
            str(data),
        ],
    )
    assert r.exit_code == 0, r.output
    good = tmp_path / "good.json"
    good.write_text(json.dumps(MIXED))
    r = runner.invoke(
        cli_app,
        ["entities", "import", str(good), "--org", "acme", "--workspace", "farm", "--data-dir", str(data)],
    )
    assert r.exit_code == 0, r.output
    assert "imported 2 new and 0 replaced entities into acme/farm" in r.output
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps([{"id": "urn:x:9", "type": "X"}, {"id": "urn:x:10", "type": "X", "bad name": 1}])
    )
    r = runner.invoke(
        cli_app,
        ["entities", "import", str(bad), "--org", "acme", "--workspace", "farm", "--data-dir", str(data)],
    )
    assert r.exit_code == 2
    assert "nothing imported: element 1: 'bad name' is not a valid attribute name" in r.output
    (tmp_path / "broken.json").write_text("[{")
    r = runner.invoke(
        cli_app,
        [
            "entities",
            "import",
            str(tmp_path / "broken.json"),
            "--org",
            "acme",
            "--workspace",
            "farm",
            "--data-dir",
            str(data),
        ],
    )
    assert r.exit_code == 2 and "not valid JSON" in r.output
    from sensorhub.db import Database

    db = Database(Settings(data_dir=data))
    with db.session() as s:
        assert sorted(s.scalars(select(Entity.entity_id))) == [
            "urn:ngsi-ld:AgriParcel:p1",
            "urn:ngsi-ld:AgriParcel:p2",
        ]
    db.dispose()


def test_demo_data_is_plausible_and_idempotent(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_data, "HISTORY_DAYS", 2)
    fixed = datetime.now(
        UTC
    )  # both runs at the same "now": a 10-minute step passing between them is not new data

    class _Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> _Frozen:
            return cls.fromtimestamp(fixed.timestamp(), tz)

    monkeypatch.setattr(demo_data, "datetime", _Frozen)
    world.org("demo", ("farm", "greenhouse"))
    world.user("demo@example.com", "demo", "owner")

    def run() -> dict[str, int]:
        with world.ctx.db.transaction() as s:
            org = accounts.get_org(s, "demo")
            return demo_data.seed(s, org, {w.slug: w for w in accounts.list_workspaces(s, org)})

    first = run()
    n_series = 4 * 5 + 20 * 2 + 6 * 3
    assert first == {"entities": 42, "new readings": n_series * (2 * 144 + 1)}
    assert run() == {"entities": 42, "new readings": 0}
    with world.ctx.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Series)) == n_series
        assert s.scalar(select(func.count()).select_from(measurements)) == first["new readings"]

    token = world.pat("demo@example.com", ["entities"])
    h = bearer(token)
    st = client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:WeatherObserved:station-1", headers=h).json()
    for attr, unit in [
        ("temperature", "CEL"),
        ("relativeHumidity", "P1"),
        ("windSpeed", "MTS"),
        ("precipitation", "MMT"),
        ("atmosphericPressure", "A97"),
    ]:
        assert st[attr]["unitCode"] == unit and isinstance(st[attr]["value"], float)
        assert st[attr]["observedAt"].endswith("Z")
    assert -30 < st["temperature"]["value"] < 45 and 950 < st["atmosphericPressure"]["value"] < 1060
    parcels = client.get("/ngsi-ld/v1/entities?type=AgriParcel&count=true", headers=h)
    assert parcels.headers["NGSILD-Results-Count"] == "12"
    assert parcels.json()[0]["location"]["value"]["type"] == "Polygon"
    soil = client.get(
        "/ngsi-ld/v1/entities",
        params={"idPattern": "soil-", "count": "true", "q": "soilMoisture>0"},
        headers=h,
    )
    assert soil.headers["NGSILD-Results-Count"] == "20"
    gh = client.get("/v3/assets", params={"workspaceId": "greenhouse"}, headers=h).json()
    assert gh["totalElements"] == 6
