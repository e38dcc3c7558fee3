"""The organisation's credential inventory and token policy: list, filter, sort, page, CSV; approve,
deny, revoke for the organisation; bad input refused with nothing half-done."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from tests.builders import World, bearer, login


def _setup(world: World) -> dict[str, str]:
    world.org("acme")
    world.org("beta")
    world.user("olga@acme.test", "acme", "owner")
    world.user("mia@acme.test", "acme", "member")
    world.user("mia@acme.test", "beta", "member")
    world.user("bob@beta.test", "beta", "owner")
    world.entity("acme", "main", "urn:ngsi-ld:Device:a1")
    world.entity("beta", "main", "urn:ngsi-ld:Device:b1")
    return {
        "pat": world.pat("mia@acme.test", ["entities"], name="=notebook"),
        "beta_only": world.pat("mia@acme.test", ["entities"], name="beta-only", organisations=["beta"]),
        "bob": world.pat("bob@beta.test", ["entities"], name="bob"),
        "key": world.api_key("acme", ["entities"], name="ingest"),
    }


def test_inventory_lists_what_reads_the_organisation_filters_sorts_pages_and_exports(
    client: TestClient, world: World
) -> None:
    _setup(world)
    login(client, "olga@acme.test")
    r = client.post("/api/orgs/acme/api-users", json={"name": "bot"})
    assert r.status_code in (200, 201), r.text
    bot = r.json()
    r = client.post(
        f"/api/orgs/acme/api-users/{bot['id']}/tokens", json={"name": "bot-t", "scopes": ["entities"]}
    )
    assert r.status_code == 201

    r = client.get("/api/orgs/acme/credentials")
    assert r.status_code == 200, r.text
    body = r.json()
    by_name = {i["name"]: i for i in body["items"]}
    # Mia's token restricted to beta and Bob's token are not acme's business.
    assert set(by_name) == {"=notebook", "ingest", "bot-t"} and body["total"] == 3
    assert by_name["=notebook"]["kind"] == "member_pat"
    assert by_name["=notebook"]["owner"] == {
        "id": by_name["=notebook"]["owner"]["id"],
        "name": "mia@acme.test",
        "role": "member",
    }
    assert by_name["ingest"]["kind"] == "api_key" and by_name["bot-t"]["kind"] == "api_user_token"
    for item in body["items"]:
        assert {
            "scopes",
            "restrictions",
            "created_at",
            "last_used_at",
            "last_used_ip",
            "expires_at",
            "status",
        } <= set(item)

    assert [i["name"] for i in client.get("/api/orgs/acme/credentials?kind=api_key").json()["items"]] == [
        "ingest"
    ]
    assert [i["name"] for i in client.get("/api/orgs/acme/credentials?q=MIA").json()["items"]] == [
        "=notebook"
    ]
    names = [i["name"] for i in client.get("/api/orgs/acme/credentials?sort=-name").json()["items"]]
    assert names == ["ingest", "bot-t", "=notebook"]
    page = client.get("/api/orgs/acme/credentials?sort=name&limit=2&offset=2").json()
    assert page["total"] == 3 and [i["name"] for i in page["items"]] == ["ingest"]

    r = client.get("/api/orgs/acme/credentials?format=csv&sort=name")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "acme-credentials.csv" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["name"] for row in rows] == ["'=notebook", "bot-t", "ingest"]  # no formula injection
    assert rows[0]["owner"] == "mia@acme.test" and rows[0]["kind"] == "member_pat"

    for bad, word in (("kind=nope", "kind"), ("sort=secret", "sort"), ("limit=0", "limit"), ("format=xml", "format"),
                      ("status=gone", "status"), ("color=red", "color")):  # fmt: skip
        r = client.get(f"/api/orgs/acme/credentials?{bad}")
        assert r.status_code == 400 and word in r.json()["message"], (bad, r.text)
    # Members and outsiders see no inventory.
    login(client, "mia@acme.test")
    assert client.get("/api/orgs/acme/credentials").status_code == 403
    login(client, "bob@beta.test")
    assert client.get("/api/orgs/acme/credentials").status_code == 404


def test_revoke_for_the_organisation_only_and_the_member_is_told(client: TestClient, world: World) -> None:
    t = _setup(world)
    api = TestClient(client.app)
    acme = {"NGSILD-Tenant": "acme"}
    assert api.get("/ngsi-ld/v1/entities?type=Device", headers=bearer(t["pat"])).status_code == 200
    login(client, "olga@acme.test")
    items = {i["name"]: i for i in client.get("/api/orgs/acme/credentials").json()["items"]}
    r = client.post(
        f"/api/orgs/acme/credentials/{items['=notebook']['id']}/revoke", json={"reason": "left the project"}
    )
    assert r.status_code == 200 and r.json()["status"] == "revoked_here"
    assert r.json()["organisation_access"] == "revoked"

    # Acme is gone from the token, beta is not.
    ents = api.get("/ngsi-ld/v1/entities?type=Device", headers=bearer(t["pat"])).json()
    assert [e["id"] for e in ents] == ["urn:ngsi-ld:Device:b1"]
    r = api.get("/ngsi-ld/v1/entities?type=Device", headers={**bearer(t["pat"]), **acme})
    assert r.status_code in (403, 404) or r.json() == [], r.text
    # Idempotent; approving it afterwards is refused.
    again = client.post(f"/api/orgs/acme/credentials/{items['=notebook']['id']}/revoke")
    assert again.status_code == 200
    r = client.post(f"/api/orgs/acme/credentials/{items['=notebook']['id']}/approve")
    assert r.status_code == 409 and "cannot be undone" in r.json()["message"]
    # The inventory hides it unless asked; the API key is revoked outright.
    assert "=notebook" not in {i["name"] for i in client.get("/api/orgs/acme/credentials").json()["items"]}
    r = client.post(f"/api/orgs/acme/credentials/{items['ingest']['id']}/revoke")
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert api.get("/api/tokens/self", headers={"x-api-key": t["key"]}).status_code == 401

    login(client, "mia@acme.test")
    (n,) = client.get("/api/notifications").json()["items"]
    assert n["subject"] == "sensorhub: your token “=notebook” was revoked for Acme"
    assert "left the project" in n["body"]
    states = {t["name"]: t["organisation_access"] for t in client.get("/api/tokens").json()}
    assert {s["organisation"]: s["state"] for s in states["=notebook"]} == {
        "acme": "revoked",
        "beta": "allowed",
    }


def test_a_token_its_owner_revoked_meanwhile_cannot_be_approved_or_denied(
    client: TestClient, world: World
) -> None:
    _setup(world)
    mia = TestClient(client.app)
    login(mia, "mia@acme.test")
    new = mia.post("/api/tokens", json={"name": "gone", "scopes": ["entities"]}).json()
    assert mia.delete(f"/api/tokens/{new['id']}").status_code == 200
    login(client, "olga@acme.test")
    for action, verb in (("approve", "approve"), ("deny", "deny")):
        r = client.post(f"/api/orgs/acme/credentials/{new['id']}/{action}", json={"reason": "late"})
        assert r.status_code == 409, r.text
        assert (
            r.json()["message"]
            == f"this token was revoked by its owner meanwhile; there is nothing to {verb}"
        )


def test_approval_pending_approved_denied_and_bad_input(client: TestClient, world: World) -> None:
    _setup(world)
    login(client, "olga@acme.test")
    r = client.put("/api/orgs/acme/policy", json={"require_pat_approval": True})
    assert r.status_code == 200 and r.json()["policy"]["require_pat_approval"] is True
    # The token Mia made before the policy keeps working (recorded as approved).
    before = {i["name"]: i for i in client.get("/api/orgs/acme/credentials").json()["items"]}
    assert before["=notebook"]["organisation_access"] == "approved"

    mia = TestClient(client.app)
    login(mia, "mia@acme.test")
    new = mia.post(
        "/api/tokens", json={"name": "new", "scopes": ["entities"], "organisations": ["acme"]}
    ).json()
    assert new["organisation_access"] == [
        {"organisation": "acme", "name": "Acme", "state": "pending", "reason": None}
    ]
    api = TestClient(client.app)
    r = api.get("/ngsi-ld/v1/entities?type=Device", headers=bearer(new["token"]))
    assert r.status_code == 403 and "awaits approval" in r.json()["detail"]

    pending = client.get("/api/orgs/acme/credentials?status=pending").json()["items"]
    assert [p["name"] for p in pending] == ["new"]
    r = client.post(f"/api/orgs/acme/credentials/{new['id']}/deny", json={})
    assert r.status_code == 400 and "reason" in r.json()["message"]
    r = client.post(f"/api/orgs/acme/credentials/{new['id']}/approve", json={"reason": "ok", "extra": 1})
    assert r.status_code == 400 and "extra" in r.text
    assert client.get("/api/orgs/acme/credentials?status=pending").json()["total"] == 1  # nothing half-done

    r = client.post(f"/api/orgs/acme/credentials/{new['id']}/approve", json={"reason": "for the field trial"})
    assert r.status_code == 200 and r.json()["status"] == "active"
    ents = api.get("/ngsi-ld/v1/entities?type=Device", headers=bearer(new["token"])).json()
    assert [e["id"] for e in ents] == ["urn:ngsi-ld:Device:a1"]
    r = client.post(f"/api/orgs/acme/credentials/{new['id']}/deny", json={"reason": "trial over"})
    assert r.status_code == 200 and r.json()["status"] == "denied"
    r = api.get("/ngsi-ld/v1/entities?type=Device", headers=bearer(new["token"]))
    assert r.status_code == 403 and "trial over" in r.json()["detail"]
    assert [s["state"] for s in mia.get(f"/api/tokens/{new['id']}").json()["organisation_access"]] == [
        "denied"
    ]

    # Approving a token its owner revoked meanwhile: 409, and no decision is recorded.
    assert mia.delete(f"/api/tokens/{new['id']}").status_code == 200
    r = client.post(f"/api/orgs/acme/credentials/{new['id']}/approve")
    assert r.status_code == 409 and "revoked" in r.json()["message"]
    r = client.get("/api/orgs/acme/credentials?include_revoked=true&q=new").json()["items"]
    assert r[0]["organisation_access"] == "denied"
    subjects = [n["subject"] for n in mia.get("/api/notifications").json()["items"]]
    assert "sensorhub: your token “new” may now read Acme" in subjects
    assert "sensorhub: your token “new” may not read Acme" in subjects
    # Only members' tokens are approved; unknown ids are 404.
    assert client.post(f"/api/orgs/acme/credentials/{before['ingest']['id']}/approve").status_code == 400
    assert client.post("/api/orgs/acme/credentials/nope/approve").status_code == 404


def test_policy_input_is_checked(client: TestClient, world: World) -> None:
    _setup(world)
    login(client, "olga@acme.test")
    for body, word in (
        ({"allowed_pat_scopes": ["root"]}, "allowed_pat_scopes"),
        ({"allowed_ips": ["10.0.0.300"]}, "allowed_ips"),
        ({"max_rotation_grace_days": 9}, "max_rotation_grace_days"),
    ):
        r = client.put("/api/orgs/acme/policy", json=body)
        assert r.status_code == 400 and word in r.json()["message"], r.text
    r = client.put(
        "/api/orgs/acme/policy", json={"allowed_pat_scopes": ["entities"], "allowed_ips": ["10.0.0.0/8"]}
    )
    assert r.status_code == 200
    assert r.json()["policy"]["allowed_pat_scopes"] == ["entities"]
    assert r.json()["policy"]["allowed_ips"] == ["10.0.0.0/8"]


def test_inventory_page_filters_approves_and_revokes(client: TestClient, world: World) -> None:
    from tests.web.helpers import csrf_of, web_login

    _setup(world)
    csrf = web_login(client, "olga@acme.test")
    r = client.post(
        "/orgs/acme/settings/policy",
        data={"csrf_token": csrf, "require_pat_approval": "1", "max_rotation_grace_days": "3",
              "allowed_ips": "", "max_token_lifetime_days": ""},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303, r.text
    mia = TestClient(client.app)
    login(mia, "mia@acme.test")
    new = mia.post("/api/tokens", json={"name": "field-trial", "scopes": ["entities"]}).json()

    page = client.get("/orgs/acme/credentials").text
    assert "1 token waiting for approval" in page and "field-trial" in page and "ingest" in page
    assert 'Approve<span class="sr-only"> field-trial of mia@acme.test' in page
    assert "field-trial" not in client.get("/orgs/acme/credentials?kind=api_key").text
    assert "kind must be one of" in client.get("/orgs/acme/credentials?kind=bogus").text
    csv_text = client.get("/orgs/acme/credentials.csv?status=pending").text
    assert csv_text.splitlines()[1].split(",")[2] == "field-trial"

    r = client.post(
        f"/orgs/acme/credentials/{new['id']}/approve",
        data={"csrf_token": csrf_of(page)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "credential-approved" in r.headers["location"]
    api = TestClient(client.app)
    assert (
        api.get(
            "/ngsi-ld/v1/entities?type=Device", headers={**bearer(new["token"]), "NGSILD-Tenant": "acme"}
        ).status_code
        == 200
    )
    r = client.post(
        f"/orgs/acme/credentials/{new['id']}/revoke", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    ents = api.get("/ngsi-ld/v1/entities?type=Device", headers=bearer(new["token"])).json()
    assert [e["id"] for e in ents] == ["urn:ngsi-ld:Device:b1"]
    # The member sees it on their Integrations page.
    web = TestClient(client.app)
    web_login(web, "mia@acme.test")
    mine = web.get("/integrations").text
    assert "acme: revoked for this organisation" in mine
    assert "revoked for Acme" in web.get("/notifications").text


def test_rotation_keeps_the_organisations_decisions(client: TestClient, world: World) -> None:
    _setup(world)
    login(client, "olga@acme.test")
    client.put("/api/orgs/acme/policy", json={"require_pat_approval": True})
    mia = TestClient(client.app)
    login(mia, "mia@acme.test")
    new = mia.post(
        "/api/tokens", json={"name": "t", "scopes": ["entities"], "organisations": ["acme"]}
    ).json()
    assert client.post(f"/api/orgs/acme/credentials/{new['id']}/approve").status_code == 200
    rotated = mia.post(f"/api/tokens/{new['id']}/rotate", json={"grace_days": 1}).json()
    assert [a["state"] for a in rotated["organisation_access"]] == ["approved"]
    api = TestClient(client.app)
    for secret in (new["token"], rotated["token"]):  # both work during the grace
        assert api.get("/ngsi-ld/v1/entities?type=Device", headers=bearer(secret)).status_code == 200
    r = client.post(f"/api/orgs/acme/credentials/{rotated['id']}/revoke")
    assert r.status_code == 200 and r.json()["status"] == "revoked_here"
    assert api.get("/ngsi-ld/v1/entities?type=Device", headers=bearer(rotated["token"])).status_code == 403
    # The previous secret, still in its grace, lost acme too.
    assert api.get("/ngsi-ld/v1/entities?type=Device", headers=bearer(new["token"])).status_code == 403
