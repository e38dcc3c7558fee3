"""Auto-provisioning (a workspace setting, off by default) on SQLite and PostgreSQL: an ingest write naming
an unknown device creates it — backfill, gateway, line protocol and GraphQL here, MQTT in tests/mqtt — for the
credentials the workspace allows, inside the write's transaction (a refused write creates nothing), audited;
and it is settable through the management API and the settings page."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import select

from sensorhub.audit.models import AuditEvent
from sensorhub.auth.token_format import digest
from sensorhub.entities.models import Entity
from sensorhub.tokens.models import Credential
from tests.builders import World, bearer, login

NEW = "urn:ngsi-ld:Device:fresh-1"
T = "2026-01-01T00:00:00Z"


def setup(world: World) -> str:
    world.org("acme", workspaces=("main", "lab"))
    world.user("owner@acme.test", "acme", "owner")
    world.user("a@acme.test", "acme", "member")
    return world.pat("a@acme.test")


def cred_id(world: World, token: str) -> str:
    with world.ctx.db.session() as s:
        cid = s.scalar(select(Credential.id).where(Credential.digest == digest(token)))
    assert cid is not None
    return cid


def turn_on(client: TestClient, ws: str = "main", **body: Any) -> dict[str, Any]:
    login(client, "owner@acme.test")
    r = client.put(f"/api/orgs/acme/workspaces/{ws}/auto-provisioning", json={"enabled": True, **body})
    assert r.status_code == 200, r.text
    client.cookies.clear()
    client.headers.pop("X-CSRF-Token", None)
    return dict(r.json())


def backfill(client: TestClient, token: str, device: str = NEW, body: Any = None, **headers: str) -> Any:
    body = body if body is not None else [{"timestamp": T, "data": {"temperature": 21.5}}]
    return client.post(
        f"/v3/devices/{device}/backfill", content=orjson.dumps(body), headers={**bearer(token), **headers}
    )


def entities(world: World, entity_id: str = NEW) -> list[Entity]:
    with world.ctx.db.session() as s:
        # tenancy: the test inspects every organisation's rows
        return list(s.scalars(select(Entity).where(Entity.entity_id == entity_id)))


def provision_events(world: World) -> list[AuditEvent]:
    with world.ctx.db.session() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == "entity.auto_provision")))


def values(client: TestClient, token: str, device: str = NEW) -> list[float]:
    r = client.get(
        f"/api/timeseries/v2/entities/{device}/data",
        params={
            "attribute": "temperature",
            "start_time": "2025-12-01T00:00:00Z",
            "end_time": "2026-02-01T00:00:00Z",
        },
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    return list(r.json()["attributes"]["temperature"])


def test_off_by_default_an_unknown_device_is_refused_and_nothing_is_created(
    client: TestClient, world: World
) -> None:
    token = setup(world)
    r = backfill(client, token)
    assert r.status_code == 404 and f"entity '{NEW}' not found" in r.text
    ws = client.get("/api/orgs/acme/workspaces", headers={"X-CSRF-Token": login(client, "owner@acme.test")})
    assert ws.status_code == 200
    assert all(
        w["auto_provisioning"] == {"enabled": False, "type": "Device", "credentials": None} for w in ws.json()
    )
    assert entities(world) == [] and provision_events(world) == []


def test_backfill_creates_the_device_once_in_its_transaction_and_audits_it(
    client: TestClient, world: World
) -> None:
    token = setup(world)
    out = turn_on(client, type="Thermometer")
    assert out["auto_provisioning"] == {"enabled": True, "type": "Thermometer", "credentials": None}
    r = backfill(client, token)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "duplicates": 0}
    (e,) = entities(world)
    assert e.type == "Thermometer" and e.workspace_id == world.workspace("acme", "main").id
    assert values(client, token) == [21.5]
    # The second message finds the device: nothing created again, one audit event.
    r = backfill(client, token, body=[{"timestamp": "2026-01-01T00:01:00Z", "data": {"temperature": 22.0}}])
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert len(entities(world)) == 1
    (ev,) = provision_events(world)
    assert ev.target == NEW and ev.credential_id == cred_id(world, token)
    assert ev.details == {"workspace": "main", "type": "Thermometer", "via": "backfill"}
    # The new device is listed like any other.
    r = client.get(f"/api/devices/{NEW}", headers=bearer(token))
    assert r.status_code == 200 and r.json()["attributes"]["temperature"]["value"] == 22.0


def test_a_refused_request_creates_nothing(client: TestClient, world: World) -> None:
    token = setup(world)
    turn_on(client)
    bad = [{"timestamp": T, "data": {"temperature": 1.0}}, {"timestamp": "yesterday", "data": {"t": 2}}]
    assert backfill(client, token, body=bad).status_code == 400
    # Gateway: the unknown device's records are fine, another record is not: all or nothing.
    body = [
        {"device": NEW, "timestamp": T, "data": {"temperature": 1.0}},
        {"device": "urn:ngsi-ld:Device:fresh-2", "timestamp": "yesterday", "data": {"temperature": 2.0}},
    ]
    r = client.post("/api/gateway/ingest", content=orjson.dumps(body), headers=bearer(token))
    assert r.status_code == 400, r.text
    # Line protocol: a bad line after the new device's refuses everything.
    lines = f"t,device={NEW} value=1 1767225600000000000\nt,device={NEW} value=oops 1767225660000000000\n"
    r = client.post(
        "/api/v2/write", params={"org": "acme", "bucket": "main"}, content=lines, headers=bearer(token)
    )
    assert r.status_code == 400, r.text
    assert entities(world) == [] and entities(world, "urn:ngsi-ld:Device:fresh-2") == []
    assert provision_events(world) == []


def test_gateway_line_protocol_and_graphql_provision_too(client: TestClient, world: World) -> None:
    token = setup(world)
    turn_on(client)
    body = [
        {"device": NEW, "timestamp": T, "data": {"temperature": 1.5}},
        {"device": "urn:ngsi-ld:Device:fresh-2", "timestamp": T, "data": {"temperature": 2.5}},
    ]
    r = client.post("/api/gateway/ingest", content=orjson.dumps(body), headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "duplicates": 0, "devices": 2}
    lines = "temperature,device=urn:ngsi-ld:Device:fresh-3 value=3.5 1767225600000000000\n"
    r = client.post(
        "/api/v2/write", params={"org": "acme", "bucket": "main"}, content=lines, headers=bearer(token)
    )
    assert r.status_code == 204, r.text
    assert values(client, token, "urn:ngsi-ld:Device:fresh-3") == [3.5]
    mutation = (
        "mutation($d: String!) { recordMeasurements(deviceId: $d, "
        'measurements: [{field: "temperature", value: 4.5, timestamp: "2026-01-01T00:00:00Z"}]) { accepted } }'
    )
    r = client.post(
        "/graphql",
        json={"query": mutation, "variables": {"d": "urn:ngsi-ld:Device:fresh-4"}},
        headers=bearer(token),
    )
    assert r.json()["data"] == {"recordMeasurements": {"accepted": 1}}, r.text
    assert values(client, token, "urn:ngsi-ld:Device:fresh-4") == [4.5]
    vias = sorted((e.target, e.details["via"]) for e in provision_events(world))
    assert vias == [
        (NEW, "gateway"),
        ("urn:ngsi-ld:Device:fresh-2", "gateway"),
        ("urn:ngsi-ld:Device:fresh-3", "line protocol"),
        ("urn:ngsi-ld:Device:fresh-4", "graphql"),
    ]


def test_only_the_listed_credentials_and_only_within_their_restrictions(
    client: TestClient, world: World
) -> None:
    token = setup(world)
    other = world.pat("a@acme.test", name="other")
    lab_only = world.pat("a@acme.test", name="lab-only", workspaces=["acme/lab"])
    mine = world.pat("a@acme.test", name="mine", entities=["urn:ngsi-ld:Device:mine"])
    no_ingest = world.pat("a@acme.test", name="reader", scopes=["timeseries"])
    turn_on(
        client,
        credentials=[
            cred_id(world, token),
            cred_id(world, lab_only),
            cred_id(world, mine),
            cred_id(world, no_ingest),
        ],
    )
    # Not on the list: refused as before.
    assert backfill(client, other).status_code == 404
    # On the list but restricted to a workspace without auto-provisioning.
    assert backfill(client, lab_only).status_code == 404
    # Entity-restricted: only a device of its own list.
    assert backfill(client, mine).status_code == 404
    assert backfill(client, mine, "urn:ngsi-ld:Device:mine").status_code == 200
    # Without the ingest scope nothing is written at all.
    assert backfill(client, no_ingest).status_code == 403
    assert entities(world) == []
    assert backfill(client, token).status_code == 200
    assert len(entities(world)) == 1


def test_an_id_taken_elsewhere_in_the_organisation_is_not_created_again(
    client: TestClient, world: World
) -> None:
    setup(world)
    world.entity("acme", "lab", NEW)
    main_only = world.pat("a@acme.test", name="main-only", workspaces=["acme/main"])
    turn_on(client)
    r = backfill(client, main_only)
    assert r.status_code == 404 and f"entity '{NEW}' not found" in r.text
    assert len(entities(world)) == 1


def test_several_workspaces_on_ask_to_name_one(client: TestClient, world: World) -> None:
    token = setup(world)
    turn_on(client, "main")
    turn_on(client, "lab")
    r = backfill(client, token)
    assert r.status_code == 400
    assert "acme/lab, acme/main" in r.json()["message"] and "NGSILD-Tenant" in r.json()["message"]
    r = backfill(client, token, **{"NGSILD-Tenant": "acme/lab"})
    assert r.status_code == 200, r.text
    (e,) = entities(world)
    assert e.workspace_id == world.workspace("acme", "lab").id
    # A device reference that is not an entity id cannot name a new device.
    r = backfill(client, token, "just-a-name", **{"NGSILD-Tenant": "acme/lab"})
    assert r.status_code == 400 and "urn:ngsi-ld:Device:sensor-1" in r.json()["message"]


def test_the_setting_is_checked_admin_only_and_audited(client: TestClient, world: World) -> None:
    token = setup(world)
    path = "/api/orgs/acme/workspaces/main/auto-provisioning"
    login(client, "a@acme.test")
    assert client.put(path, json={"enabled": True}).status_code == 403
    login(client, "owner@acme.test")
    r = client.put(path, json={"enabled": True, "type": "no spaces"})
    assert r.status_code == 400 and "type" in r.json()["message"]
    r = client.put(path, json={"enabled": True, "credentials": ["nope"]})
    assert r.status_code == 400 and "'nope' is not a live token" in r.json()["message"]
    r = client.put(path, json={"enabled": True, "surprise": 1})
    assert r.status_code in (400, 422)
    r = client.put(path, json={"enabled": True, "credentials": [cred_id(world, token)]})
    assert r.status_code == 200
    r = client.put(path, json={"enabled": False})
    assert r.status_code == 200 and r.json()["auto_provisioning"]["enabled"] is False
    with world.ctx.db.session() as s:
        evs = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "workspace.auto_provisioning")))
    assert [e.details["enabled"] for e in evs] == [True, False]
    assert backfill(client, token).status_code == 404


def test_the_settings_page_turns_it_on(client: TestClient, world: World) -> None:
    token = setup(world)
    csrf = login(client, "owner@acme.test")
    page = client.get("/orgs/acme/settings")
    assert page.status_code == 200 and "Auto-provisioning: off" in page.text
    r = client.post(
        "/orgs/acme/workspaces/main/auto-provisioning",
        data={"csrf_token": csrf, "enabled": "1", "type": "Meter", "credentials": cred_id(world, token)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    page = client.get("/orgs/acme/settings")
    assert "Auto-provisioning: on" in page.text and cred_id(world, token) in page.text
    r = client.post(
        "/orgs/acme/workspaces/main/auto-provisioning",
        data={"csrf_token": csrf, "enabled": "1", "type": "bad type!"},
        follow_redirects=False,
    )
    assert r.status_code == 400 and "not a valid entity type" in r.text
    client.cookies.clear()
    client.headers.pop("X-CSRF-Token", None)
    assert backfill(client, token).status_code == 200
    (e,) = entities(world)
    assert e.type == "Meter"
