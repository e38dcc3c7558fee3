"""A signed download URL is only as good as the credential behind it: every fetch checks that the token
which made the export is still active and may still read what the file holds (issue 10 #10). Plus the
cache and bounds rules of the export routes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Grant
from sensorhub.auth.token_format import digest
from sensorhub.db import utcnow
from sensorhub.entities.models import Entity
from sensorhub.tokens.models import Credential
from tests.builders import World, bearer
from tests.exports.conftest import OTHER, STATION, T0, download, export, ingest, minutes, revoke_token


def ready_url(client: TestClient, token: str, series: list[tuple[str, str]] | None = None) -> str:
    r = export(client, token, series or [(STATION, "temperature")])
    assert r.status_code == 200, r.text
    url = str(r.json()["download_url"])
    assert download(client, url).status_code == 200
    return url


def refused(client: TestClient, url: str, needle: str) -> None:
    r = download(client, url)
    assert r.status_code == 403, r.text
    assert needle in r.json()["message"], r.json()["message"]
    assert "export again" in r.json()["message"]
    head = TestClient(client.app).head(url)
    assert head.status_code == 403


@pytest.fixture
def data(world: World, station: tuple[Entity, Entity]) -> None:
    ingest(world, station[0], "temperature", minutes(60), [float(i) for i in range(60)])
    ingest(world, station[1], "temperature", minutes(60), [float(-i) for i in range(60)])


def test_revoked_token_stops_its_links_and_others_keep_working(
    client: TestClient, world: World, data: None
) -> None:
    token = world.pat("ana@acme.test", ["export"])
    other = world.pat("ana@acme.test", ["export"], name="other")
    key = world.api_key("acme", ["export"])
    url, other_url, key_url = ready_url(client, token), ready_url(client, other), ready_url(client, key)
    revoke_token(world, token)
    refused(client, url, "the token that created this export was revoked")
    assert download(client, other_url).status_code == 200
    revoke_token(world, key)
    refused(client, key_url, "was revoked")
    assert download(client, other_url).status_code == 200


def test_expired_token_and_disabled_owner_stop_the_links(
    client: TestClient, world: World, data: None
) -> None:
    token = world.pat("ana@acme.test", ["export"])
    url = ready_url(client, token)
    with world.ctx.db.transaction() as s:
        cred = s.scalars(select(Credential).where(Credential.digest == digest(token))).one()
        cred.expires_at = utcnow() - timedelta(seconds=1)
    refused(client, url, "has expired")

    world.user("bob@acme.test", "acme", "member")
    bob = world.pat("bob@acme.test", ["export"])
    bob_url = ready_url(client, bob)
    with world.ctx.db.transaction() as s:
        user = accounts.get_user_by_email(s, "bob@acme.test")
        assert user is not None
        accounts.set_user_disabled(s, user, True)
    refused(client, bob_url, "is disabled")


def test_owner_removed_or_demoted_loses_the_links(client: TestClient, world: World, data: None) -> None:
    # An admin reads the whole organisation without grants; as a plain member without grants, nothing.
    world.user("adam@acme.test", "acme", "admin")
    world.user("mia@acme.test", "acme", "member")
    adam_url = ready_url(client, world.pat("adam@acme.test", ["export"]))
    mia_url = ready_url(client, world.pat("mia@acme.test", ["export"]))
    with world.ctx.db.transaction() as s:
        org = accounts.get_org(s, "acme")
        adam = accounts.get_user_by_email(s, "adam@acme.test")
        mia = accounts.get_user_by_email(s, "mia@acme.test")
        assert adam is not None and mia is not None
        accounts.set_membership(s, adam, org, "member")
        accounts.remove_membership(s, mia, org)
    refused(client, adam_url, "may no longer read")
    refused(client, mia_url, "may no longer read")


def test_a_narrowed_grant_stops_the_link_a_wider_one_does_not(
    client: TestClient, world: World, data: None
) -> None:
    world.user("bob@acme.test", "acme", "member", grant_org=False)
    world.grant("bob@acme.test", "acme", entity=STATION)
    world.grant("bob@acme.test", "acme", entity=OTHER, time_start=T0 + timedelta(minutes=30))
    token = world.pat("bob@acme.test", ["export"])
    url = ready_url(client, token, [(STATION, "temperature"), (OTHER, "temperature")])
    # A wider grant on top changes nothing about what the file holds: still downloadable.
    world.grant("bob@acme.test", "acme", entity=OTHER)
    assert download(client, url).status_code == 200
    # The station-1 grant now starts at minute 10: the file holds earlier points of it.
    with world.ctx.db.transaction() as s:
        for g in s.scalars(select(Grant).where(Grant.entity_id == STATION)):
            g.time_start = T0 + timedelta(minutes=10)
    refused(client, url, f"may no longer read '{STATION}.temperature'")


def test_json_carrying_download_urls_is_never_cached(client: TestClient, world: World, data: None) -> None:
    token = world.pat("ana@acme.test", ["export"])
    created = export(client, token, [(STATION, "temperature")])
    assert created.headers["cache-control"] == "no-store"
    listed = client.get("/api/datahub/exports", headers=bearer(token))
    assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
    inline = export(client, token, [(STATION, "temperature")], "csv")
    assert inline.headers["cache-control"] == "no-store"
    got = download(client, created.json()["download_url"])
    assert "no-store" in got.headers["cache-control"]


@pytest.mark.parametrize("limit", ["0", "501", "-1", str(2**63), str(2**64 + 1), "1e30", "9" * 5000, "x"])
def test_listing_limit_out_of_bounds_is_a_400_naming_it(
    client: TestClient, world: World, station: tuple[Entity, Entity], limit: str
) -> None:
    token = world.pat("ana@acme.test", ["export"])
    r = client.get(f"/api/datahub/exports?limit={limit}", headers=bearer(token))
    assert r.status_code == 400, r.text
    assert "limit" in r.json()["message"]
    assert client.get("/api/datahub/exports?limit=500", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("aggregation", ["9" * 5000 + "s", "99999999999999999999h", "1000000000d"])
def test_huge_bucket_counts_are_a_400(
    client: TestClient, world: World, station: tuple[Entity, Entity], aggregation: str
) -> None:
    token = world.pat("ana@acme.test", ["export"])
    r = export(client, token, [(STATION, "temperature")], aggregation=aggregation)
    assert r.status_code == 400, r.text
    assert "aggregation" in r.json()["message"]


def test_huge_expires_in_a_link_is_a_403_not_a_500(client: TestClient, world: World, data: None) -> None:
    token = world.pat("ana@acme.test", ["export"])
    url = ready_url(client, token)
    base, _, _ = url.partition("?")
    for expires in (str(2**64), "9" * 5000, "-" + "9" * 30):
        r = download(client, f"{base}?expires={expires}&signature=abc")
        assert r.status_code == 403, r.text
