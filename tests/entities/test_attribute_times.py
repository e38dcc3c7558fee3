"""Attributes' createdAt/modifiedAt (``Entity.attr_times``, migration 0026): kept by every write path —
the import, the ingest service's latest states — and backfilled for entities that existed before; the
createdAt of history instances (``attribute_instances.created_us``, migration 0027) likewise."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, text

from sensorhub.config import Settings
from sensorhub.entities.models import Entity
from sensorhub.kit.time import to_us
from tests.builders import World, bearer
from tests.conftest import TEST_SECRET_KEY
from tests.entities.helpers import owner_token, put_entities

E = "/ngsi-ld/v1/entities"
DEV = "urn:ngsi-ld:Device:t1"


def _sys(client: TestClient, token: str, eid: str = DEV) -> dict[str, Any]:
    r = client.get(f"{E}/{eid}", params={"options": "sysAttrs"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_an_ingested_state_moves_its_attribute_modified_at_only(client: TestClient, world: World) -> None:
    token = owner_token(world, [{"id": DEV, "type": "Device", "label": "roof", "location":
                                 {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8, 47]}}}])  # fmt: skip
    before = _sys(client, token)
    assert before["label"]["createdAt"] == before["location"]["createdAt"] == before["createdAt"]
    body = [{"timestamp": "2026-01-01T00:00:00Z", "data": {"door": "open"}}]
    ingest = world.pat("owner@acme.test", ["ingest"], "ingest")
    r = client.post(f"/v3/devices/{DEV}/backfill", json=body, headers=bearer(ingest))
    assert r.status_code == 200, r.text
    after = _sys(client, token)
    assert after["label"] == before["label"] and after["location"] == before["location"]
    t = after["door"]
    assert t["value"] == "open" and t["createdAt"] == t["modifiedAt"] == after["modifiedAt"]
    with world.ctx.db.transaction() as s:
        e = s.scalars(select(Entity).where(Entity.entity_id == DEV)).one()
        assert e.attr_times is not None
        c, m = e.attr_times["door"][""]
        assert c == m == to_us(e.modified_at) > e.attr_times["label"][""][1]


def test_every_instance_of_a_multi_attribute_has_its_times(client: TestClient, world: World) -> None:
    names = [{"type": "Property", "value": "Tour Eiffel", "datasetId": "urn:ngsi-ld:Dataset:fr"},
             {"type": "Property", "value": "Eiffel Tower"}]  # fmt: skip
    token = owner_token(world, [{"id": DEV, "type": "Device", "name": names}])
    got = _sys(client, token)["name"]
    assert len(got) == 2 and all(i["createdAt"] == i["modifiedAt"] for i in got)
    plain = client.get(f"{E}/{DEV}", headers=bearer(token)).json()["name"]
    assert all("createdAt" not in i for i in plain)  # only with sysAttrs


def _migrate(settings: Settings) -> None:
    from sensorhub.context import AppContext
    from sensorhub.migrate import downgrade, upgrade

    ctx = AppContext.build(settings)
    upgrade(ctx.db)
    World(ctx).org("acme", ("main",))
    past = {"type": "Property", "value": "p", "observedAt": "2020-01-01T00:00:00Z"}
    future = {"type": "Property", "value": "f", "observedAt": "2030-01-01T00:00:00Z"}
    item = {"id": DEV, "type": "Device", "label": {"type": "Property", "value": "roof"}, "t": 1.5,
            "past": past, "future": future,
            "name": [{"type": "Property", "value": "a", "datasetId": "urn:ngsi-ld:Dataset:x"},
                     {"type": "Property", "value": "b"}],
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8, 47]}}}  # fmt: skip
    put_entities(World(ctx), "acme", "main", [item])
    with ctx.db.engine.connect() as c:
        written = dict(
            c.execute(text("SELECT attribute, created_us FROM attribute_instances")).tuples().all()
        )
    downgrade(ctx.db, "0025_entity_datasets")
    with ctx.db.engine.connect() as c:
        c.execute(text("UPDATE entities SET modified_at = :m"), {"m": datetime(2100, 1, 1)})
        c.commit()
    upgrade(ctx.db)
    with ctx.db.transaction() as s:
        e = s.scalars(select(Entity)).one()
        at = [to_us(e.created_at), to_us(e.modified_at)]
        assert at[1] == to_us(datetime(2100, 1, 1, tzinfo=UTC))
        assert e.attr_times == {
            "label": {"": at}, "t": {"": at}, "location": {"": at}, "past": {"": at}, "future": {"": at},
            "name": {"": at, "urn:ngsi-ld:Dataset:x": at},
        }  # fmt: skip
        got = dict(s.execute(text("SELECT attribute, created_us FROM attribute_instances")).tuples().all())
    # dated by their write: exact; observed before the entity was created: its createdAt; observed
    # later: that time (the entity's last change bounds it)
    assert got == {"label": written["label"], "location": written["location"], "name": written["name"],
                   "past": at[0], "future": to_us(datetime(2030, 1, 1, tzinfo=UTC))}  # fmt: skip
    assert written["label"] >= at[0] and written["past"] == written["label"]
    ctx.db.dispose()


def test_migration_backfills_attribute_times_sqlite(tmp_path: Path) -> None:
    _migrate(Settings(data_dir=tmp_path))


def test_migration_backfills_attribute_times_postgresql(
    tmp_path: Path, fresh_pg: Callable[[bool], str]
) -> None:
    _migrate(
        Settings(data_dir=tmp_path, database_url=fresh_pg(False), env="test", secret_key=TEST_SECRET_KEY)
    )
