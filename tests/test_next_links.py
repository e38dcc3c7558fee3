"""``Link: rel="next"`` behind a proxy: every family's next link is absolute against SENSORHUB_BASE_URL,
its scheme and path prefix included, and following it (through the proxy that strips the prefix)
reads the next page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from tests.builders import World, bearer
from tests.entities.helpers import devices, put_entities

BASE = "https://public.example.com/sensorhub"


@pytest.fixture
def proxied(settings: Settings) -> Iterator[tuple[TestClient, World]]:
    """The app as seen through a TLS proxy at BASE that strips ``/sensorhub`` and speaks plain HTTP."""
    ctx = AppContext.build(settings.model_copy(update={"base_url": BASE}))
    with TestClient(create_app(ctx.settings, ctx), base_url="http://internal:8000") as c:
        yield c, World(ctx)
    ctx.db.dispose()


def _walk(client: TestClient, path: str, headers: dict[str, str]) -> list[list[object]]:
    pages = []
    url: str | None = path
    while url is not None:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        nxt = r.links.get("next")
        url = None
        if nxt:
            link = nxt["url"]
            assert link.startswith(BASE + path.split("?")[0] + "?"), link
            url = link[len(BASE) :]  # what the proxy forwards
    return pages


def test_ngsi_ld_next_link_uses_the_base_url(proxied: tuple[TestClient, World]) -> None:
    client, world = proxied
    world.org("acme")
    world.user("a@acme.test", "acme", "member")
    put_entities(world, "acme", "main", devices("d", 5))
    token = world.pat("a@acme.test")
    pages = _walk(client, "/ngsi-ld/v1/entities?type=Device&limit=2", bearer(token))
    ids = [e["id"] for p in pages for e in p]  # type: ignore[index]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert ids == [f"urn:ngsi-ld:Device:d-{i:04d}" for i in range(5)]


def test_leaf_next_link_uses_the_base_url(proxied: tuple[TestClient, World]) -> None:
    client, world = proxied
    world.org("acme")
    world.user("a@acme.test", "acme", "member")
    world.entity("acme", "main", "R1")
    token = world.pat("a@acme.test")
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    body = [
        {"timestamp": (t0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"), "data": {"t": i}}
        for i in range(5)
    ]
    assert client.post("/v3/devices/R1/backfill", json=body, headers=bearer(token)).status_code == 200
    pages = _walk(client, "/api/data?entity=R1&limit=2", bearer(token))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [r["value"] for p in pages for r in p] == [0, 1, 2, 3, 4]  # type: ignore[index]
