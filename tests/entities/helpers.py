"""Shared helpers for the entity tests: real rows through the real import service."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from sensorhub.accounts import service as accounts
from sensorhub.entities.service import import_entities
from tests.builders import World


def put_entities(world: World, org: str, ws: str, items: list[dict[str, Any]]) -> None:
    with world.ctx.db.transaction() as s:
        o = accounts.get_org(s, org)
        import_entities(s, o, accounts.get_workspace(s, o, ws), items)


def devices(prefix: str, n: int, type_: str = "Device", **attrs: Any) -> list[dict[str, Any]]:
    return [{"id": f"urn:ngsi-ld:{type_}:{prefix}-{i:04d}", "type": type_, **attrs} for i in range(n)]


def follow(client: TestClient, url: str, headers: dict[str, str]) -> tuple[list[str], list[Any]]:
    """Every id of every page, following Link rel=next; also the responses."""
    ids: list[str] = []
    responses = []
    while url:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        responses.append(r)
        ids += [e["id"] for e in r.json()]
        nxt = r.links.get("next")
        url = nxt["url"] if nxt else ""
    return ids, responses


def problem(r: Any, status: int, type_suffix: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == "https://uri.etsi.org/ngsi-ld/errors/" + type_suffix, body
    assert body["status"] == status and body["title"] and body["detail"]
    return body
