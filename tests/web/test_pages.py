"""The web UI through real HTTP forms (TestClient), on both backends."""

from __future__ import annotations

import ast
import html
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from fastapi.testclient import TestClient

from sensorhub.auth.token_format import scanner_regex
from sensorhub.kit.time import to_us
from tests.builders import PASSWORD, World, bearer
from tests.web.helpers import revealed, seed_series, web_login

ADMIN_PATHS = ["api-keys", "api-users", "grants", "members", "settings"]


def setup(world: World) -> None:
    world.org("acme", ("farm", "greenhouse"))
    world.user("olga@acme.test", "acme", "owner")
    world.user("mia@acme.test", "acme", "member")


def test_front_page_shows_the_login_form_to_a_visitor(client: TestClient, world: World) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert '<label for="email">Email</label>' in r.text and '<label for="password">Password</label>' in r.text
    assert ">Log in</button>" in r.text
    assert 'href="/api/docs"' in r.text
    # Pages load only our own assets and cannot be framed.
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/static/app.js").status_code == 200


def test_login_sets_a_safe_session_cookie_and_shows_home(client: TestClient, world: World) -> None:
    setup(world)
    r = client.get("/login")
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', r.text).group(1)  # type: ignore[union-attr]
    r = client.post(
        "/login",
        data={
            "email": "olga@acme.test",
            "password": PASSWORD,
            "login_csrf": login_csrf,
            "next": "/integrations",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/integrations"
    cookie = next(
        v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("sensorhub_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "Secure" not in cookie  # plain http in tests; behind HTTPS the flag is set
    home = client.get("/")
    assert "Acme" in home.text and "owner" in home.text
    assert ">Log out</button>" in home.text and ">Integrations</a>" in home.text


def test_wrong_password_shows_a_clear_page(client: TestClient, world: World) -> None:
    setup(world)
    client.get("/login")
    r = client.post(
        "/login",
        data={
            "email": "olga@acme.test",
            "password": "nope-nope-nope",
            "login_csrf": client.cookies.get("sensorhub_login_csrf"),
            "next": "/",
        },
    )
    assert r.status_code == 401
    assert "Wrong email or password." in r.text
    assert 'value="olga@acme.test"' in r.text  # the email is kept, the password is not
    assert "sensorhub_session" not in client.cookies


def test_too_many_failed_logins_say_when_to_try_again(client: TestClient, world: World) -> None:
    setup(world)
    client.get("/login")
    data = {
        "email": "olga@acme.test",
        "password": "wrong-password!",
        "next": "/",
        "login_csrf": client.cookies.get("sensorhub_login_csrf"),
    }
    limit = client.app.state.ctx.settings.login_attempts_per_window  # type: ignore[attr-defined]
    # The limiter uses fixed windows: if a window boundary falls inside the loop, keep failing until
    # the budget of the new window is spent too (at most one boundary can be crossed).
    codes = []
    for _ in range(2 * limit):
        codes.append(client.post("/login", data=data).status_code)
        if codes[-1] == 429:
            break
    assert codes.count(401) >= limit and codes[-1] == 429, codes
    # Even the right password is refused while the budget is spent.
    r = client.post("/login", data=dict(data, password=PASSWORD))
    assert r.status_code == 429
    assert re.search(r"Too many failed logins\. Try again in \d+ minutes?\.", r.text)
    assert int(r.headers["retry-after"]) > 0


def test_login_form_needs_its_own_csrf_cookie(client: TestClient, world: World) -> None:
    setup(world)
    r = client.post("/login", data={"email": "olga@acme.test", "password": PASSWORD, "login_csrf": "forged"})
    assert r.status_code == 400 and "login form expired" in r.text
    assert "sensorhub_session" not in client.cookies


def test_pages_send_visitors_to_login_and_back(client: TestClient, world: World) -> None:
    setup(world)
    r = client.get("/integrations", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/integrations"
    r = client.get("/orgs/acme/members", follow_redirects=False)
    assert r.headers["location"] == "/login?next=/orgs/acme/members"
    # No open redirect through ?next=
    client.get("/login")
    r = client.post(
        "/login",
        data={
            "email": "olga@acme.test",
            "password": PASSWORD,
            "next": "//evil.example/x",
            "login_csrf": client.cookies.get("sensorhub_login_csrf"),
        },
        follow_redirects=False,
    )
    assert r.headers["location"] == "/"


def test_create_token_reveals_it_once(client: TestClient, world: World) -> None:
    setup(world)
    csrf = web_login(client, "mia@acme.test")
    page = client.get("/integrations")
    for label in ("Name", "Expires", "Expiry date", "Entities", "Data from", "Data until"):
        assert f">{label}</label>" in page.text, label
    assert '<option value="365" selected>' in page.text
    assert ">Create token</button>" in page.text

    r = client.post(
        "/integrations/tokens",
        data={"csrf_token": csrf, "name": "notebook", "scopes": ["timeseries", "entities"], "expiry": "90"},
    )
    assert r.status_code == 201, r.text
    assert "shown only once" in r.text and ">Copy</button>" in r.text
    assert r.headers["cache-control"] == "no-store"
    token = revealed(r.text)
    assert token and re.fullmatch(scanner_regex("shub"), token)
    assert r.text.count(token) >= 2  # in the reveal box and in the ready-to-paste examples
    assert "http://testserver/api/tokens/self" in r.text

    me = TestClient(client.app).get("/api/tokens/self", headers=bearer(token))
    assert me.status_code == 200, me.text
    assert me.json()["effective_scopes"] == ["entities", "timeseries"]
    assert 89 * 86400 < me.json()["expires_in_seconds"] <= 90 * 86400

    again = client.get("/integrations")
    assert token not in again.text
    assert "notebook" in again.text and "badge-active" in again.text
    assert ">Revoke<" in again.text and ">Rotate<" in again.text


def test_create_token_with_restrictions_and_custom_expiry(client: TestClient, world: World) -> None:
    setup(world)
    csrf = web_login(client, "olga@acme.test")
    on = (datetime.now(UTC) + timedelta(days=10)).strftime("%Y-%m-%d")
    r = client.post(
        "/integrations/tokens",
        data={
            "csrf_token": csrf,
            "name": "farm only",
            "scopes": ["timeseries"],
            "expiry": "custom",
            "expires_on": on,
            "workspaces": ["acme/farm"],
            "entities": "urn:a\nurn:b",
            "time_start": "2026-01-01",
            "allowed_ips": "10.0.0.0/8",
        },
    )
    assert r.status_code == 201, r.text
    me = TestClient(client.app).get("/api/tokens/self", headers=bearer(revealed(r.text) or ""))
    # The IP allowlist refuses the test client, which proves the restriction was stored.
    assert me.status_code in (401, 403)
    page = client.get("/integrations").text
    assert "workspaces: acme/farm" in page and "entities: urn:a, urn:b" in page and "IPs: 10.0.0.0/8" in page
    assert on in page


def test_create_token_errors_are_shown_next_to_the_form(client: TestClient, world: World) -> None:
    setup(world)
    csrf = web_login(client, "mia@acme.test")
    r = client.post("/integrations/tokens", data={"csrf_token": csrf, "name": "nb", "expiry": "365"})
    assert r.status_code == 400
    assert 'role="alert"' in r.text and "at least one scope" in r.text
    assert 'value="nb"' in r.text  # what was typed is kept
    assert revealed(r.text) is None
    client.post("/integrations/tokens", data={"csrf_token": csrf, "name": "dup", "scopes": "entities"})
    r = client.post("/integrations/tokens", data={"csrf_token": csrf, "name": "dup", "scopes": "entities"})
    assert r.status_code == 409 and "already have an active token named" in r.text
    r = client.post(
        "/integrations/tokens",
        data={"csrf_token": csrf, "name": "x", "scopes": "entities", "expiry": "never"},
    )
    assert r.status_code == 400 and "not allowed by the organisation policy" in r.text


def test_revoke_and_rotate_through_the_forms(client: TestClient, world: World) -> None:
    setup(world)
    csrf = web_login(client, "mia@acme.test")
    api = TestClient(client.app)
    r = client.post("/integrations/tokens", data={"csrf_token": csrf, "name": "nb", "scopes": "entities"})
    token = revealed(r.text) or ""
    token_id = re.search(
        r'action="/integrations/tokens/([^/]+)/revoke"', client.get("/integrations").text
    ).group(1)  # type: ignore[union-attr]

    r = client.post(f"/integrations/tokens/{token_id}/rotate", data={"csrf_token": csrf})
    assert r.status_code == 200 and "The old secret stopped working just now." in r.text
    new = revealed(r.text) or ""
    assert new and new != token
    assert api.get("/api/tokens/self", headers=bearer(token)).status_code == 401
    assert api.get("/api/tokens/self", headers=bearer(new)).status_code == 200

    new_id = re.search(
        r'action="/integrations/tokens/([^/]+)/revoke"', client.get("/integrations").text
    ).group(1)  # type: ignore[union-attr]
    r = client.post(
        f"/integrations/tokens/{new_id}/revoke", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/integrations?done=revoked"
    assert api.get("/api/tokens/self", headers=bearer(new)).status_code == 401
    page = client.get("/integrations?done=revoked").text
    assert "Token revoked." in page and "Revoked tokens (2)" in page
    assert "You have no tokens yet." in page


def test_forms_without_the_csrf_token_are_refused(client: TestClient, world: World) -> None:
    setup(world)
    csrf = web_login(client, "olga@acme.test")
    r = client.post("/integrations/tokens", data={"name": "nb", "scopes": "entities"})
    assert r.status_code == 403 and "form has expired" in r.text
    assert r.headers["content-type"].startswith("text/html")
    r = client.post(
        "/integrations/tokens", data={"name": "nb", "scopes": "entities", "csrf_token": csrf[:-2] + "xx"}
    )
    assert r.status_code == 403
    assert client.post("/orgs/acme/api-keys", data={"name": "k", "scopes": "entities"}).status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    assert "nb" not in client.get("/integrations").text.split("Your tokens")[1]


def test_member_sees_no_admin_links_and_gets_403(client: TestClient, world: World) -> None:
    setup(world)
    csrf = web_login(client, "mia@acme.test")
    home = client.get("/").text
    for name in ("API keys", "API users", "Grants", "Members", "Settings"):
        assert f">{name}</a>" not in home
    for path in ADMIN_PATHS:
        r = client.get(f"/orgs/acme/{path}")
        assert r.status_code == 403, path
        assert r.headers["content-type"].startswith("text/html")
        assert "Only organisation owners and admins" in r.text
        assert ">API keys</a>" not in r.text
    assert (
        client.post(
            "/orgs/acme/api-keys", data={"csrf_token": csrf, "name": "k", "scopes": "entities"}
        ).status_code
        == 403
    )
    assert client.post("/orgs/acme/members", data={"csrf_token": csrf, "email": "x@y.z"}).status_code == 403
    # Another organisation's pages do not exist for outsiders.
    world.org("other")
    assert client.get("/orgs/other/api-keys").status_code == 404


def test_admin_creates_an_api_key_and_an_api_user_with_a_token(client: TestClient, world: World) -> None:
    setup(world)
    csrf = web_login(client, "olga@acme.test")
    home = client.get("/").text
    assert 'href="/orgs/acme/api-keys">API keys</a>' in home

    r = client.post(
        "/orgs/acme/api-keys",
        data={
            "csrf_token": csrf,
            "name": "backfill",
            "scopes": ["ingest", "entities"],
            "workspaces": "farm",
            "expiry": "30",
        },
    )
    assert r.status_code == 201, r.text
    key = revealed(r.text) or ""
    assert key.startswith("shub_key_")
    me = TestClient(client.app).get("/api/tokens/self", headers={"x-api-key": key})
    assert me.status_code == 200 and me.json()["effective_scopes"] == ["entities", "ingest"]
    page = client.get("/orgs/acme/api-keys").text
    assert "backfill" in page and "workspaces: farm" in page and key not in page
    key_id = re.search(r'action="/orgs/acme/api-keys/([^/]+)/revoke"', page).group(1)  # type: ignore[union-attr]
    r = client.post(f"/orgs/acme/api-keys/{key_id}/revoke", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert TestClient(client.app).get("/api/tokens/self", headers={"x-api-key": key}).status_code == 401

    r = client.post(
        "/orgs/acme/api-users",
        data={"csrf_token": csrf, "name": "etl", "role": "viewer", "workspaces": "greenhouse"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    user_page = r.headers["location"].split("?")[0]
    page = client.get(r.headers["location"]).text
    assert "API user created" in page and "Greenhouse" in page
    r = client.post(
        user_page + "/tokens", data={"csrf_token": csrf, "name": "nightly", "scopes": ["timeseries"]}
    )
    assert r.status_code == 201, r.text
    bot_token = revealed(r.text) or ""
    me = TestClient(client.app).get("/api/tokens/self", headers=bearer(bot_token))
    assert me.status_code == 200, me.text
    # A viewer may not ingest: the service's refusal is shown in the page.
    r = client.post(user_page + "/tokens", data={"csrf_token": csrf, "name": "writer", "scopes": ["ingest"]})
    assert r.status_code == 403 and "does not allow the 'ingest' scope" in html.unescape(r.text)
    # Disabling the API user cuts its token off at once.
    client.post(user_page, data={"csrf_token": csrf, "disabled": "1"})
    assert TestClient(client.app).get("/api/tokens/self", headers=bearer(bot_token)).status_code == 401
    # ... and its page says so instead of offering the create form.
    page = client.get(user_page).text
    assert "This API user is disabled. Enable it to create tokens." in page
    assert f'action="{user_page}/tokens"' not in page
    assert client.get("/orgs/acme/api-users/no-such-user").status_code == 404
    assert "etl" in client.get("/orgs/acme/api-users").text


def test_admin_manages_members_grants_and_policy(client: TestClient, world: World, make_client) -> None:  # type: ignore[no-untyped-def]
    setup(world)
    world.user("new@acme.test")  # an account of no organisation yet
    csrf = web_login(client, "olga@acme.test")
    r = client.post(
        "/orgs/acme/members",
        data={
            "csrf_token": csrf,
            "email": "new@acme.test",
            "role": "viewer",
            "password": "a-long-enough-password",
        },
    )
    assert r.status_code == 400 and "&#39;password&#39; is not accepted" in r.text
    r = client.post(
        "/orgs/acme/members",
        data={"csrf_token": csrf, "email": "new@acme.test", "role": "viewer"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert "Invitation sent" in page and "Pending invitations" in page and "new@acme.test" in page
    assert "Role of new@acme.test" not in page  # not a member until they accept

    # The invited person accepts on their Invitations page (linked from the home page).
    newcomer = make_client()
    their_csrf = web_login(newcomer, "new@acme.test")
    assert "1 pending invitation" in newcomer.get("/").text
    inv_page = newcomer.get("/invitations").text
    inv_id = re.search(r'action="/invitations/([^/]+)/accept"', inv_page).group(1)  # type: ignore[union-attr]
    assert "Acme" in inv_page and "viewer" in inv_page
    r = newcomer.post(
        f"/invitations/{inv_id}/accept", data={"csrf_token": their_csrf}, follow_redirects=False
    )
    assert r.status_code == 303 and "you are now a member" in newcomer.get(r.headers["location"]).text
    r = newcomer.post(f"/invitations/{inv_id}/accept", data={"csrf_token": their_csrf})
    assert r.status_code == 409 and "already accepted" in r.text

    page = client.get("/orgs/acme/members").text
    assert "Pending invitations" not in page
    uid = re.search(
        r'action="/orgs/acme/members/([^/]+)/role"[^<]*<input[^>]*>\s*<label for="role-[^"]+" class="sr-only">Role of new@acme.test',
        page,
    )
    new_id = (
        uid.group(1)
        if uid
        else re.findall(r'/orgs/acme/members/([^/]+)/remove" data-confirm="Remove new@acme.test', page)[0]
    )
    assert (
        client.post(
            f"/orgs/acme/members/{new_id}/role",
            data={"csrf_token": csrf, "role": "member"},
            follow_redirects=False,
        ).status_code
        == 303
    )

    r = client.post(
        "/orgs/acme/grants",
        data={
            "csrf_token": csrf,
            "user": new_id,
            "workspace": "farm",
            "time_start": "2026-01-01",
            "time_end": "2026-02-01",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get("/orgs/acme/grants").text
    assert "new@acme.test" in page and "Farm" in page and "2026-01-01 – 2026-02-01" in page
    r = client.post(
        "/orgs/acme/grants",
        data={"csrf_token": csrf, "user": new_id, "time_start": "2026-02-01", "time_end": "2026-01-01"},
    )
    assert r.status_code == 400 and "time_end must be after time_start" in r.text
    grant_id = re.search(r"/orgs/acme/grants/([^/]+)/delete", page).group(1)  # type: ignore[union-attr]
    assert (
        client.post(
            f"/orgs/acme/grants/{grant_id}/delete", data={"csrf_token": csrf}, follow_redirects=False
        ).status_code
        == 303
    )

    r = client.post(f"/orgs/acme/members/{new_id}/remove", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and "new@acme.test" not in client.get("/orgs/acme/members").text

    # The last owner cannot be demoted: the page says why.
    owner_id = re.search(
        r'/orgs/acme/members/([^/]+)/remove" data-confirm="Remove olga@acme.test',
        client.get("/orgs/acme/members").text,
    ).group(1)  # type: ignore[union-attr]
    r = client.post(f"/orgs/acme/members/{owner_id}/role", data={"csrf_token": csrf, "role": "member"})
    assert r.status_code == 409 and "at least one owner" in r.text

    r = client.post(
        "/orgs/acme/settings/policy",
        data={"csrf_token": csrf, "max_token_lifetime_days": "60"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get("/integrations").text
    assert "at most 60 days" in page and '<option value="60" selected>' in page and 'value="365"' not in page
    r = client.post(
        "/orgs/acme/workspaces", data={"csrf_token": csrf, "name": "North Field"}, follow_redirects=False
    )
    assert r.status_code == 303 and "north-field" in client.get("/orgs/acme/settings").text


def test_data_view_charts_a_series_the_user_may_read(client: TestClient, world: World) -> None:
    setup(world)
    world.user("vic@acme.test", "acme", "viewer", grant_org=False)
    world.grant("vic@acme.test", "acme", workspace="greenhouse")
    world.entity("acme", "farm", "urn:ngsi-ld:WeatherObserved:station-1", "WeatherObserved")
    end = datetime(2026, 1, 20, tzinfo=UTC)
    seed_series(
        client.app.state.ctx, "acme", "urn:ngsi-ld:WeatherObserved:station-1", "temperature", "CEL", end
    )  # type: ignore[attr-defined]

    web_login(client, "mia@acme.test")
    page = client.get("/data").text
    assert "station-1" in page and "WeatherObserved" in page
    r = client.get("/data", params={"entity": "urn:ngsi-ld:WeatherObserved:station-1", "range": "24h"})
    assert r.status_code == 200
    assert "<svg" in r.text, r.text[r.text.find("<main") :]
    assert 'class="line"' in r.text and "temperature (CEL)" in r.text
    assert "ending at the newest point" in r.text
    # The examples on the Integrations page use a real entity and attribute.
    assert (
        "urn:ngsi-ld:WeatherObserved:station-1/data?attribute=temperature" in client.get("/integrations").text
    )

    r = client.get(
        "/data",
        params={
            "entity": "urn:ngsi-ld:WeatherObserved:station-1",
            "range": "custom",
            "start": "2026-01-18",
            "end": "2026-01-19",
        },
    )
    assert r.status_code == 200 and 'class="line"' in r.text
    assert "from 2026-01-18 00:00 UTC to 2026-01-19 00:00 UTC." in r.text
    r = client.get(
        "/data",
        params={"entity": "urn:ngsi-ld:WeatherObserved:station-1", "range": "custom", "start": "2026-01-19"},
    )
    assert 'role="alert"' in r.text and "Choose both dates" in r.text

    viewer = TestClient(client.app)
    web_login(viewer, "vic@acme.test")
    assert "station-1" not in viewer.get("/data").text
    r = viewer.get("/data", params={"entity": "urn:ngsi-ld:WeatherObserved:station-1"})
    assert r.status_code == 200 and "not found" in r.text and "<svg" not in r.text


def test_logout(client: TestClient, world: World) -> None:
    setup(world)
    csrf = web_login(client, "mia@acme.test")
    r = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?done=logged-out"
    assert "You are logged out." in client.get("/login?done=logged-out").text
    assert client.get("/integrations", follow_redirects=False).status_code == 303


def test_integrations_preselects_the_organisation_it_is_opened_in(client: TestClient, world: World) -> None:
    setup(world)
    world.org("beta")
    world.user("mia@acme.test", "beta", "viewer")
    csrf = web_login(client, "mia@acme.test")
    page = client.get("/integrations?org=beta").text
    boxes = dict(re.findall(r'id="org-(\w+)" name="organisations" value="[^"]+"( checked)?', page))
    assert boxes == {"acme": "", "beta": " checked"}
    beta_id = re.search(r'id="org-beta" name="organisations" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = client.post(
        "/integrations/tokens",
        data={"csrf_token": csrf, "name": "beta only", "scopes": "entities", "organisations": beta_id},
    )
    assert r.status_code == 201, r.text
    me = TestClient(client.app).get("/api/tokens/self", headers=bearer(revealed(r.text) or "")).json()
    assert [o["slug"] for o in me["organisations"]] == ["beta"], me
    r = client.post(
        "/integrations/tokens", data={"csrf_token": csrf, "name": "nowhere", "scopes": "entities"}
    )
    assert r.status_code == 400 and "Tick at least one organisation" in r.text
    # Without ?org= every organisation is ticked: no restriction.
    assert (
        len(re.findall(r'name="organisations" value="[^"]+" checked', client.get("/integrations").text)) == 2
    )


def test_names_are_escaped(client: TestClient, world: World) -> None:
    setup(world)
    csrf = web_login(client, "mia@acme.test")
    evil = '<script>alert("x")</script>'
    r = client.post("/integrations/tokens", data={"csrf_token": csrf, "name": evil, "scopes": "entities"})
    assert r.status_code == 201
    page = client.get("/integrations").text
    assert evil not in page and "&lt;script&gt;" in page


def test_invitations_can_be_cancelled_and_declined_on_the_pages(
    client: TestClient, world: World, make_client
) -> None:  # type: ignore[no-untyped-def]
    setup(world)
    world.user("guest@elsewhere.test")
    csrf = web_login(client, "olga@acme.test")
    guest = make_client()
    guest_csrf = web_login(guest, "guest@elsewhere.test")
    for _ in range(2):
        client.post("/orgs/acme/members", data={"csrf_token": csrf, "email": "guest@elsewhere.test"})
    page = client.get("/orgs/acme/members").text
    assert page.count('class="card list-item member invitation"') == 1  # inviting again replaces
    inv_id = re.search(r"/orgs/acme/invitations/([^/]+)/cancel", page).group(1)  # type: ignore[union-attr]
    r = client.post(
        f"/orgs/acme/invitations/{inv_id}/cancel", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303 and "Invitation cancelled." in client.get(r.headers["location"]).text
    assert "No pending invitations." in guest.get("/invitations").text
    r = guest.post(f"/invitations/{inv_id}/accept", data={"csrf_token": guest_csrf})
    assert r.status_code == 409 and "already cancelled" in r.text

    client.post("/orgs/acme/members", data={"csrf_token": csrf, "email": "guest@elsewhere.test"})
    inv_id = re.search(r'action="/invitations/([^/]+)/decline"', guest.get("/invitations").text).group(1)  # type: ignore[union-attr]
    r = guest.post(f"/invitations/{inv_id}/decline", data={"csrf_token": guest_csrf}, follow_redirects=False)
    assert r.status_code == 303 and "Invitation declined." in guest.get(r.headers["location"]).text
    # Someone else's invitation is not found, and nobody joined.
    r = client.post(f"/invitations/{inv_id}/accept", data={"csrf_token": csrf})
    assert r.status_code == 404
    assert "guest@elsewhere.test" not in client.get("/orgs/acme/members").text


# --- issue 10: snippets cannot be broken out of; pages survive timestamps at the edges ---------------

HOSTILE_NAMES = [
    't", "x": __import__("os").system("touch PWNED"), "y": "',
    "t'); __import__('os').system('touch PWNED'); ('",
    "t\\",
    "t\n__import__('os').system('touch PWNED')\n",
    't\'$(touch PWNED)`touch PWNED`"$(touch PWNED)"',
    't""" + __import__(\'os\').getcwd() + """',
]


def store_series_directly(world: World, entity_id: str, attribute: str, ts_us: int) -> None:
    """A series and its newest point written straight through the store, bypassing every validator
    (as data written before the validators existed would be)."""
    from sqlalchemy import select as sa_select

    from sensorhub.entities.models import Entity
    from sensorhub.timeseries.backends import store_for
    from sensorhub.timeseries.models import Series

    with world.ctx.db.transaction() as s:
        e = s.scalars(sa_select(Entity).where(Entity.entity_id == entity_id)).one()
        series = Series(entity_pk=e.pk, attribute=attribute, unit=None)
        s.add(series)
        s.flush()
        store = store_for(s)
        store.insert_points(series.id, np.array([ts_us], np.int64), np.array([1.0]))
        store.update_last(series.id, ts_us, 1.0)


def python_calls(code: str) -> set[str]:
    """The dotted names of every function called in ``code`` (which must parse)."""

    def dotted(node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{dotted(node.value)}.{node.attr}"
        if isinstance(node, ast.Call):
            return dotted(node.func) + "()"
        return type(node).__name__

    return {dotted(n.func) for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call)}


def snippet(page: str, code_id: str) -> str:
    m = re.search(rf'<code id="{code_id}">(.*?)</code>', page, re.S)
    assert m, code_id
    return html.unescape(m.group(1))


def test_a_hostile_stored_attribute_name_cannot_break_out_of_any_snippet(
    client: TestClient, world: World, tmp_path: Path
) -> None:
    setup(world)
    world.entity("acme", "farm", "urn:ngsi-ld:Device:d1")
    web_login(client, "mia@acme.test")
    newest = to_us(datetime(2026, 1, 1, tzinfo=UTC))
    for i, name in enumerate(HOSTILE_NAMES):
        store_series_directly(world, "urn:ngsi-ld:Device:d1", name, newest + i)  # each the newest in turn
        page = client.get("/integrations")
        assert page.status_code == 200
        req, sdk = snippet(page.text, "code-requests"), snippet(page.text, "code-sdk")
        assert python_calls(req) == {
            "print",
            "requests.get",
            "requests.get().json",
            "r.raise_for_status",
            "r.json",
        }
        assert python_calls(sdk) == {"sc.Client", "print", "client.whoami", "client.timeseries", "df.plot"}
        # The name is one string literal, exactly the stored name.
        params = next(n for n in ast.walk(ast.parse(req)) if isinstance(n, ast.keyword) and n.arg == "params")
        assert ast.literal_eval(params.value)["attribute"] == name
        call = next(
            n
            for n in ast.walk(ast.parse(sdk))
            if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "timeseries"
        )
        assert ast.literal_eval(call.args[1]) == [name]
        # The shell snippets run in bash with curl replaced by a function printing its arguments.
        shell = snippet(page.text, "code-env") + "\n" + snippet(page.text, "code-curl")
        out = subprocess.run(
            ["bash", "-c", 'curl() { printf "%s\\0" "$@"; }\n' + shell],
            capture_output=True,
            cwd=tmp_path,
            check=True,
        ).stdout.split(b"\0")
        url = out[-2].decode()
        assert parse_qs(urlsplit(url).query)["attribute"] == [name]
        assert not (tmp_path / "PWNED").exists()


def test_pages_render_with_points_at_the_edges_of_time(client: TestClient, world: World) -> None:
    setup(world)
    world.entity("acme", "farm", "urn:ngsi-ld:Device:d1")
    web_login(client, "mia@acme.test")
    # Stored before the time range was enforced: the very end of what Python's datetime can hold.
    store_series_directly(world, "urn:ngsi-ld:Device:d1", "late", to_us(datetime.max.replace(tzinfo=UTC)))
    assert client.get("/integrations").status_code == 200
    for range_ in ("24h", "365d"):
        r = client.get(
            "/data", params={"entity": "urn:ngsi-ld:Device:d1", "attribute": "late", "range": range_}
        )
        assert r.status_code == 200, r.text
    store_series_directly(world, "urn:ngsi-ld:Device:d1", "early", to_us(datetime(1900, 1, 1, tzinfo=UTC)))
    for range_ in ("24h", "365d"):
        r = client.get(
            "/data", params={"entity": "urn:ngsi-ld:Device:d1", "attribute": "early", "range": range_}
        )
        assert r.status_code == 200, r.text
    r = client.get(
        "/data",
        params={
            "entity": "urn:ngsi-ld:Device:d1",
            "range": "custom",
            "start": "0001-01-01",
            "end": "9999-12-31",
        },
    )
    assert r.status_code == 200 and "supported time range" in r.text
