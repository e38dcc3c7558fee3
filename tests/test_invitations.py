"""Members join by invitation only (issue 10, finding 4): no oracle over other tenants' users, no
membership without the person's consent, and token use audited only where its data lives."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from sensorhub.accounts.models import Invitation
from sensorhub.db import utcnow
from tests.builders import World, bearer, login

VICTIM = "victim@alpha.test"
ENTITY_B = "urn:ngsi-ld:Device:beta-1"


def _two_tenants(world: World) -> str:
    """Alpha with the victim (and the victim's token), beta with its owner and one entity."""
    world.org("alpha")
    world.org("beta", ("main", "lab"))
    world.user(VICTIM, "alpha", "member")
    world.user("boss@beta.test", "beta", "owner")
    world.entity("beta", "main", ENTITY_B, temperature=21.5)
    return world.pat(VICTIM, ["entities"])


def _invite(c: TestClient, email: str, **kw: Any) -> Any:
    return c.post("/api/orgs/beta/members", json={"email": email, **kw})


def _shape(body: dict[str, Any]) -> dict[str, Any]:
    """The body with the parts that must differ (ids, the address, timestamps) blanked out."""
    return {k: ("…" if k in ("id", "email", "created_at", "expires_at") else v) for k, v in body.items()}


def test_inviting_answers_the_same_whether_the_email_has_an_account(client: TestClient, world: World) -> None:
    token = _two_tenants(world)
    login(client, "boss@beta.test")
    known = _invite(client, VICTIM, role="member", workspaces=["main"])
    unknown = _invite(client, "nobody@nowhere.test", role="member", workspaces=["main"])
    assert known.status_code == unknown.status_code == 202
    assert known.headers["content-type"] == unknown.headers["content-type"]
    assert _shape(known.json()) == _shape(unknown.json())
    assert known.json()["status"] == "pending" and known.json()["workspaces"] == ["main"]
    # Nobody joined: the member list is unchanged and the victim's token still cannot read beta.
    assert [m["email"] for m in client.get("/api/orgs/beta/members").json()] == ["boss@beta.test"]
    api = TestClient(client.app)
    assert api.get(f"/ngsi-ld/v1/entities/{ENTITY_B}", headers=bearer(token)).status_code == 404
    pending = {i["email"] for i in client.get("/api/orgs/beta/invitations").json()}
    assert pending == {VICTIM, "nobody@nowhere.test"}


def test_membership_with_its_grants_exists_only_after_acceptance(
    client: TestClient, world: World, make_client: Any
) -> None:
    token = _two_tenants(world)
    world.entity("beta", "lab", "urn:ngsi-ld:Device:beta-lab", temperature=3.0)
    login(client, "boss@beta.test")
    inv = _invite(client, VICTIM, role="viewer", workspaces=["main"]).json()

    victim = make_client()
    login(victim, VICTIM)
    mine = victim.get("/api/invitations").json()
    assert [(i["id"], i["organisation"]["slug"], i["role"]) for i in mine] == [(inv["id"], "beta", "viewer")]
    api = TestClient(client.app)
    assert api.get(f"/ngsi-ld/v1/entities/{ENTITY_B}", headers=bearer(token)).status_code == 404

    r = victim.post(f"/api/invitations/{inv['id']}/accept")
    assert r.status_code == 200 and r.json()["slug"] == "beta" and r.json()["role"] == "viewer"
    assert api.get(f"/ngsi-ld/v1/entities/{ENTITY_B}", headers=bearer(token)).status_code == 200
    # The grant covers the invited workspace only.
    assert (
        api.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Device:beta-lab", headers=bearer(token)).status_code == 404
    )
    members = {m["email"]: m["role"] for m in client.get("/api/orgs/beta/members").json()}
    assert members == {"boss@beta.test": "owner", VICTIM: "viewer"}
    assert victim.get("/api/invitations").json() == []
    assert client.get("/api/orgs/beta/invitations").json() == []
    # Accepting twice does nothing more.
    assert victim.post(f"/api/invitations/{inv['id']}/accept").status_code == 409


def test_declined_cancelled_and_expired_invitations_cannot_be_accepted(
    client: TestClient, world: World, make_client: Any
) -> None:
    token = _two_tenants(world)
    login(client, "boss@beta.test")
    victim = make_client()
    login(victim, VICTIM)
    api = TestClient(client.app)

    declined = _invite(client, VICTIM).json()
    assert victim.post(f"/api/invitations/{declined['id']}/decline").status_code == 204
    r = victim.post(f"/api/invitations/{declined['id']}/accept")
    assert r.status_code == 409 and "declined" in r.json()["message"]

    cancelled = _invite(client, VICTIM).json()
    assert client.delete(f"/api/orgs/beta/invitations/{cancelled['id']}").status_code == 204
    assert victim.get("/api/invitations").json() == []
    r = victim.post(f"/api/invitations/{cancelled['id']}/accept")
    assert r.status_code == 409 and "cancelled" in r.json()["message"]
    assert client.delete(f"/api/orgs/beta/invitations/{cancelled['id']}").status_code == 409

    expired = _invite(client, VICTIM).json()
    with world.ctx.db.transaction() as s:
        s.execute(
            update(Invitation)
            .where(Invitation.id == expired["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert victim.get("/api/invitations").json() == []
    assert [i["status"] for i in client.get("/api/orgs/beta/invitations").json()] == ["expired"]
    r = victim.post(f"/api/invitations/{expired['id']}/accept")
    assert r.status_code == 409 and "expired" in r.json()["message"]

    assert api.get(f"/ngsi-ld/v1/entities/{ENTITY_B}", headers=bearer(token)).status_code == 404
    assert [m["email"] for m in client.get("/api/orgs/beta/members").json()] == ["boss@beta.test"]


def test_someone_elses_invitation_is_not_found(client: TestClient, world: World, make_client: Any) -> None:
    _two_tenants(world)
    world.user("other@alpha.test", "alpha")
    login(client, "boss@beta.test")
    inv = _invite(client, VICTIM).json()
    other = make_client()
    login(other, "other@alpha.test")
    assert other.get("/api/invitations").json() == []
    for action in ("accept", "decline"):
        r = other.post(f"/api/invitations/{inv['id']}/{action}")
        assert r.status_code == 404 and r.json()["message"] == f"invitation '{inv['id']}' not found"
    # Nor can the inviting admin accept it on the victim's behalf.
    assert client.post(f"/api/invitations/{inv['id']}/accept").status_code == 404
    assert other.post("/api/invitations/no-such-id/accept").status_code == 404
    assert [m["email"] for m in client.get("/api/orgs/beta/members").json()] == ["boss@beta.test"]


def test_a_password_is_refused_for_every_email(client: TestClient, world: World) -> None:
    _two_tenants(world)
    login(client, "boss@beta.test")
    for email in (VICTIM, "nobody@nowhere.test"):
        r = _invite(client, email, password="pass-word-123")
        assert r.status_code == 400 and "'password' is not accepted" in r.json()["message"], r.text
    assert client.get("/api/orgs/beta/invitations").json() == []


def test_invitation_rules_for_admins(client: TestClient, world: World, make_client: Any) -> None:
    _two_tenants(world)
    world.user("adm@beta.test", "beta", "admin")
    adm = make_client()
    login(adm, "adm@beta.test")
    r = _invite(adm, VICTIM, role="owner")
    assert r.status_code == 403 and "owners" in r.json()["message"]
    assert _invite(adm, "adm@beta.test").status_code == 409  # already a member
    assert _invite(adm, "not-an-email").status_code == 400
    assert _invite(adm, VICTIM, workspaces=["nowhere"]).status_code == 404
    # Inviting again replaces the pending invitation.
    first = _invite(adm, VICTIM, role="viewer").json()
    second = _invite(adm, VICTIM.upper(), role="member").json()
    assert [(i["id"], i["role"]) for i in adm.get("/api/orgs/beta/invitations").json()] == [
        (second["id"], "member")
    ]
    assert first["id"] != second["id"]
    # A member of another organisation cannot see or cancel beta's invitations.
    login(client, VICTIM)
    assert client.get("/api/orgs/beta/invitations").status_code == 404
    assert client.delete(f"/api/orgs/beta/invitations/{second['id']}").status_code == 404


def _events(c: TestClient, org: str) -> list[dict[str, Any]]:
    r = c.get(f"/api/orgs/{org}/audit-events")
    assert r.status_code == 200, r.text
    return list(r.json())


def test_token_use_is_audited_only_in_the_organisation_whose_data_it_touched(
    client: TestClient, world: World, make_client: Any
) -> None:
    world.org("alpha")
    world.org("beta")
    world.user("two@both.test", "alpha", "member")
    world.user("two@both.test", "beta", "member")
    world.user("boss@alpha.test", "alpha", "owner")
    world.user("boss@beta.test", "beta", "owner")
    world.entity("alpha", "main", "urn:ngsi-ld:Device:alpha-1", temperature=1.0)
    token = world.pat("two@both.test", ["entities"], name="secret-project-name")
    api = TestClient(client.app)
    assert (
        api.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Device:alpha-1", headers=bearer(token)).status_code == 200
    )

    login(client, "boss@alpha.test")
    beta = make_client()
    login(beta, "boss@beta.test")
    used_alpha = [e for e in _events(client, "alpha") if e["action"] == "token.used"]
    assert len(used_alpha) == 1 and "alpha-1" in used_alpha[0]["details"]["route"]
    assert [e for e in _events(beta, "beta") if e["action"] == "token.used"] == []
    assert "alpha-1" not in beta.get("/api/orgs/beta/audit-events").text


def test_a_token_limited_to_one_organisation_is_not_in_the_others_audit_log(
    client: TestClient, world: World, make_client: Any
) -> None:
    world.org("alpha")
    world.org("beta")
    world.user("two@both.test", "alpha", "member")
    world.user("two@both.test", "beta", "member")
    world.user("boss@beta.test", "beta", "owner")
    with world.ctx.db.session() as s:
        from sensorhub.accounts.service import get_org

        alpha_id = get_org(s, "alpha").id
    token = world.pat("two@both.test", ["entities"], name="alpha-only-name", organisations=[alpha_id])
    login(client, "two@both.test")
    api = TestClient(client.app)
    assert api.get("/api/tokens/self", headers=bearer(token)).status_code == 200
    tid = client.get("/api/tokens").json()[0]["id"]
    assert client.post(f"/api/tokens/{tid}/rotate").status_code == 200
    new = client.get("/api/tokens").json()
    active = next(t for t in new if t["status"] == "active")
    client.delete(f"/api/tokens/{active['id']}")
    beta = make_client()
    login(beta, "boss@beta.test")
    text = beta.get("/api/orgs/beta/audit-events").text
    assert "alpha-only-name" not in text and tid not in text


def test_column_reads_of_telemetry_and_leaf_are_audited_in_the_organisation_read(
    client: TestClient, world: World, make_client: Any
) -> None:
    """Routes that read series through columns (no Entity rows) still say whose data they touched."""
    world.org("alpha")
    world.org("beta")
    world.user("two@both.test", "alpha", "member")
    world.user("two@both.test", "beta", "member")
    world.user("boss@alpha.test", "alpha", "owner")
    world.user("boss@beta.test", "beta", "owner")
    world.entity("alpha", "main", "urn:ngsi-ld:Device:alpha-1")
    api = TestClient(client.app)
    key = world.api_key("alpha", ["ingest"])
    r = api.post(
        "/v3/devices/urn:ngsi-ld:Device:alpha-1/backfill",
        headers={"x-api-key": key},
        json={"timestamp": "2026-01-01T00:00:00Z", "data": {"temperature": 1.5}},
    )
    assert r.status_code == 200, r.text
    routes = ["/api/devices", "/api/sensors", "/api/data?from=2025-12-01T00:00:00Z&to=2026-02-01T00:00:00Z"]
    for i, route in enumerate(routes):
        token = world.pat("two@both.test", ["telemetry", "timeseries"], name=f"column-reader-{i}")
        r = api.get(route, headers=bearer(token))
        assert r.status_code == 200 and "alpha-1" in r.text, (route, r.text)
    login(client, "boss@alpha.test")
    beta = make_client()
    login(beta, "boss@beta.test")
    used = [e["details"]["route"] for e in _events(client, "alpha") if e["action"] == "token.used"]
    assert sorted(u for u in used if not u.endswith("/backfill")) == sorted(r.split("?")[0] for r in routes)
    assert [e for e in _events(beta, "beta") if e["action"] == "token.used"] == []
