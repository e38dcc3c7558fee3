"""Multi-attributes (several instances of one attribute, told apart by ``datasetId``) outside NGSI-LD:
every other API family shows the default instance (the one without datasetId), and ingest keeps the
instances apart. Runs on SQLite and PostgreSQL (the ``backend`` fixture)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from sensorhub.accounts import service as accounts
from sensorhub.entities.models import Entity
from tests.builders import World, bearer
from tests.entities.helpers import put_entities

EID = "urn:ngsi-ld:Device:multi-1"
FR = "urn:ngsi-ld:Dataset:fr"


def _status(value: str, at: str, dataset: str | None = None) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": at} | (
        {"datasetId": dataset} if dataset else {}
    )


def _setup(world: World, status: Any) -> tuple[str, str]:
    world.org("acme", ("farm",))
    world.user("owner@acme.test", "acme", "owner")
    put_entities(world, "acme", "farm", [{"id": EID, "type": "Device", "status": status}])
    read = world.pat("owner@acme.test", ["entities", "telemetry", "timeseries"], name="read")
    ingest = world.pat("owner@acme.test", ["ingest"], name="ingest")
    return read, ingest


def test_other_families_show_the_default_instance(world: World, client: TestClient) -> None:
    read, ingest = _setup(
        world, [_status("Bonjour", "2026-01-01T00:00:00Z", FR), _status("Hello", "2026-01-01T00:00:00Z")]
    )
    h = bearer(read)
    r = client.post(  # a series makes the entity a device (LEAF /api/devices)
        f"/v3/devices/{EID}/backfill",
        json={"timestamp": "2026-01-01T00:00:00Z", "data": {"temperature": 21.5}},
        headers=bearer(ingest),
    )
    assert r.status_code == 200, r.text
    with world.ctx.db.transaction() as s:
        ws = accounts.get_workspace(s, accounts.get_org(s, "acme"), "farm")
    r = client.get("/v3/assets", params={"workspaceId": ws.id}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["properties"]["status"] == "Hello"
    r = client.get("/api/devices", headers=h)
    assert r.status_code == 200, r.text
    assert "Hello" in r.text and "Bonjour" not in r.text
    r = client.get(f"/ngsi-ld/v1/entities/{EID}", params={"options": "keyValues"}, headers=h)
    assert r.json()["status"] == {"dataset": {"@none": "Hello", FR: "Bonjour"}}


def test_ingest_onto_a_multi_attribute_without_default_instance_keeps_the_others(
    world: World, client: TestClient
) -> None:
    read, ingest = _setup(world, [_status("Bonjour", "2026-01-01T00:00:00Z", FR)])
    r = client.post(
        f"/v3/devices/{EID}/backfill",
        json={"timestamp": "2026-01-02T00:00:00Z", "data": {"status": "Hello"}},
        headers=bearer(ingest),
    )
    assert r.status_code == 200, r.text
    r = client.get(f"/ngsi-ld/v1/entities/{EID}", params={"options": "keyValues"}, headers=bearer(read))
    assert r.json()["status"] == {"dataset": {"@none": "Hello", FR: "Bonjour"}}
    with world.ctx.db.transaction() as s:
        e = s.query(Entity).filter_by(entity_id=EID).one()
        assert e.attrs["status"]["value"] == "Hello"  # what every other family reads
