"""An NGSI-LD client pages through entities with a token against a real ``uvicorn`` server.

``ngsildclient`` (PyPI) pins ``httpx<0.24`` and so cannot be installed next to this project; this test
uses a small raw NGSI-LD client (``requests``) that does what such clients do: send the token, ask for
``application/ld+json``, and follow ``Link: rel="next"`` until it is gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sensorhub.config import Settings
from tests.builders import World
from tests.entities.helpers import devices, put_entities, running_server


class NgsiLdClient:
    """The essentials of an NGSI-LD consumer."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base = base_url.rstrip("/")
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/ld+json"})

    def query(self, **params: Any) -> Iterator[dict[str, Any]]:
        url: str | None = f"{self.base}/ngsi-ld/v1/entities"
        while url:
            r = self.http.get(url, params=params, timeout=30)
            r.raise_for_status()
            assert r.headers["Content-Type"] == "application/ld+json"
            yield from r.json()
            url, params = r.links.get("next", {}).get("url"), {}

    def count(self, **params: Any) -> int:
        r = self.http.get(
            f"{self.base}/ngsi-ld/v1/entities", params={**params, "count": "true", "limit": 0}, timeout=30
        )
        r.raise_for_status()
        return int(r.headers["NGSILD-Results-Count"])

    def get(self, entity_id: str) -> requests.Response:
        return self.http.get(f"{self.base}/ngsi-ld/v1/entities/{entity_id}", timeout=30)


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    with running_server(settings) as base:
        yield base


def test_client_pages_through_entities_on_a_real_server(world: World, server: str) -> None:
    world.org("acme", ("farm",))
    world.user("o@acme.test", "acme", "owner")
    put_entities(world, "acme", "farm", devices("d", 1234) + devices("p", 17, "AgriParcel"))
    world.org("other")
    put_entities(world, "other", "main", devices("z", 50))
    client = NgsiLdClient(server, world.pat("o@acme.test", ["entities"]))

    got = [e["id"] for e in client.query(type="Device", limit=250)]
    assert len(got) == 1234 and len(set(got)) == 1234 and got == sorted(got)
    assert client.count(local="true") == 1251 and client.count(type="AgriParcel") == 17
    everything = list(client.query(local="true"))  # default page size 100, 13 pages
    assert len(everything) == 1251 and all(e["@context"] for e in everything)
    r = client.get("urn:ngsi-ld:Device:z-0001")
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
