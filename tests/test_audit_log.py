"""The audit log as a product: filters, pages, CSV, the web page, retention; a credential's use appears
only in the organisation whose data it touched."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from fastapi.testclient import TestClient

from sensorhub.audit import service as audit
from sensorhub.context import AppContext
from sensorhub.db import utcnow
from tests.builders import World, bearer, login


def _world(client: TestClient, world: World) -> str:
    world.org("acme")
    world.org("beta")
    world.user("olga@acme.test", "acme", "owner")
    world.user("mia@acme.test", "acme", "member")
    world.user("mia@acme.test", "beta", "member")
    world.user("bob@beta.test", "beta", "owner")
    world.entity("acme", "main", "urn:ngsi-ld:Device:a1")
    mia = world.pat("mia@acme.test", ["entities"], name="=sum(A1)")
    # Mia's token reads acme's data only (beta has no entity): its use is acme's business alone.
    r = TestClient(client.app).get("/ngsi-ld/v1/entities/urn:ngsi-ld:Device:a1", headers=bearer(mia))
    assert r.status_code == 200, r.text
    return mia


def test_filters_pages_and_csv(client: TestClient, world: World) -> None:
    _world(client, world)
    login(client, "olga@acme.test")
    for i in range(3):
        assert (
            client.post("/api/orgs/acme/api-keys", json={"name": f"k{i}", "scopes": ["entities"]}).status_code
            == 201
        )

    everything = client.get("/api/orgs/acme/audit-events")
    total = int(everything.headers["x-total-count"])
    assert total >= 5
    keys = client.get("/api/orgs/acme/audit-events?action=token.create&target=k")
    assert [e["target"] for e in keys.json()] == ["k2", "k1", "k0"]  # newest first
    assert client.get("/api/orgs/acme/audit-events?action=token.").headers["x-total-count"] == str(
        len([e for e in everything.json() if e["action"].startswith("token.")])
    )
    mine = client.get("/api/orgs/acme/audit-events?actor=olga@acme.test").json()
    assert mine and all(e["actor_user_id"] == mine[0]["actor_user_id"] for e in mine)
    assert client.get("/api/orgs/acme/audit-events?actor=bob@beta.test").json() == []  # not a member here
    page = client.get("/api/orgs/acme/audit-events?action=token.create&limit=2")
    assert (
        len(page.json()) == 2 and 'rel="next"' in page.headers["link"] and "offset=2" in page.headers["link"]
    )
    future = (utcnow() + timedelta(days=1)).date().isoformat()
    assert client.get(f"/api/orgs/acme/audit-events?since={future}").json() == []

    r = client.get("/api/orgs/acme/audit-events?format=csv&action=token.create&target=sum")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["target"] for row in rows] == ["'=sum(A1)"]  # no formula injection
    assert r.headers["content-disposition"] == 'attachment; filename="acme-audit.csv"'
    r = client.get("/api/orgs/acme/audit-events?format=csv&actor=nobody@else.test")
    assert r.status_code == 200 and list(csv.DictReader(io.StringIO(r.text))) == []
    for bad, word in (("since=yesterday", "since"), ("limit=5000", "limit"), ("format=pdf", "format"),
                      ("since=2026-02-01&until=2026-01-01", "until"), ("who=me", "who")):  # fmt: skip
        r = client.get(f"/api/orgs/acme/audit-events?{bad}")
        assert r.status_code == 400 and word in r.json()["message"], (bad, r.text)


def test_a_credentials_use_is_only_where_data_was_touched(client: TestClient, world: World) -> None:
    _world(client, world)
    login(client, "olga@acme.test")
    cred = next(
        c["id"] for c in client.get("/api/orgs/acme/credentials").json()["items"] if c["name"] == "=sum(A1)"
    )
    used = client.get(f"/api/orgs/acme/audit-events?action=token.used&credential={cred}").json()
    assert len(used) == 1 and used[0]["details"]["route"].startswith("/ngsi-ld/")
    login(client, "bob@beta.test")
    assert client.get(f"/api/orgs/beta/audit-events?action=token.used&credential={cred}").json() == []


def test_the_audit_page_and_retention(client: TestClient, world: World, ctx: AppContext) -> None:
    from tests.web.helpers import web_login

    _world(client, world)
    web_login(client, "olga@acme.test")
    page = client.get("/orgs/acme/audit").text
    assert "token.used" in page and "=sum(A1)" in page and "Events are kept 365 days" in page
    assert "olga@acme.test" in client.get("/orgs/acme/audit?actor=olga@acme.test").text
    assert "token.used" not in client.get("/orgs/acme/audit?action=token.create").text.split("<tbody>")[-1]
    assert "is not a valid ISO 8601" in client.get("/orgs/acme/audit?since=nope").text
    r = client.get("/orgs/acme/audit.csv?action=token.")
    assert r.text.startswith("at,action,") and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="acme-audit.csv"'
    # An actor nobody in the organisation is: the file has its header and no events.
    assert (
        client.get("/orgs/acme/audit.csv?actor=nobody@else.test").text.strip()
        == "at,action,actor_user_id,credential_id,target,ip,details"
    )

    with ctx.db.transaction() as s:
        assert audit.prune(s, 30, utcnow() + timedelta(days=31)) >= 2
        assert audit.prune(s, 0, utcnow() + timedelta(days=3650)) == 0  # 0 keeps everything
    assert "No events match" in client.get("/orgs/acme/audit").text
