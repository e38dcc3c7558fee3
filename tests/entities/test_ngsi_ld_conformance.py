"""docs/ngsi-ld.md's conformance table is what the server does: every row's probe is sent to a live app.

A row reads ``| feature | status | `METHOD /path?query [JSON body]` [Link `<url>`] → STATUS [Type] |``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sensorhub.config import Settings
from tests.builders import World, bearer
from tests.entities.helpers import problem, put_entities

DOC = Path(__file__).resolve().parents[2] / "docs" / "ngsi-ld.md"
_ROW = re.compile(
    r"^\|[^|]+\|[^|]+\|\s*`(?P<req>[^`]+)`(?:\s+Link\s+`<(?P<link>[^>]+)>`)?\s*→\s*(?P<status>\d{3})(?:\s+(?P<type>\w+))?\s*\|$"
)


def probes() -> list[tuple[str, str | None, int, str | None]]:
    text = DOC.read_text("utf-8")
    section = text.split("## Conformance", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = _ROW.match(line.strip().replace("\\|", "%7C"))
        if m:
            rows.append((m["req"], m["link"], int(m["status"]), m["type"]))
    return rows


def test_the_table_has_probes() -> None:
    assert len(probes()) >= 30


@pytest.fixture
def token(world: World, settings: Settings, tmp_path: Path) -> str:
    d = tmp_path / "contexts"
    d.mkdir()
    (d / "suite.jsonld").write_text(json.dumps({"@context": {"Parcel": "https://example.org/Parcel"}}))
    settings.ngsi_ld_context_dir = d
    world.org("acme", ("farm",))
    world.user("owner@acme.test", "acme", "owner")
    items: list[dict[str, Any]] = [
        {
            "id": "urn:ngsi-ld:Parcel:p1",
            "type": ["Parcel", "Field"],
            "area": 2.5,
            "crop": {"type": "VocabProperty", "vocab": "wheat"},
            "label": {"type": "LanguageProperty", "languageMap": {"de": "Feld"}},
            "farm": {"type": "Relationship", "object": "urn:ngsi-ld:Farm:f1"},
        },
        {"id": "urn:ngsi-ld:Farm:f1", "type": "Farm", "name": "Alpha"},
    ]
    put_entities(world, "acme", "farm", items)
    return world.pat("owner@acme.test", ["entities"])


def test_every_row_of_the_conformance_table(client: TestClient, token: str) -> None:
    failures = []
    for req, link, status, type_ in probes():
        method, rest = req.split(" ", 1)
        path, _, body = rest.partition(" ")
        headers = bearer(token)
        if link:
            headers["Link"] = f'<{link}>; rel="http://www.w3.org/ns/json-ld#context"'
        r = client.request(
            method, path, headers=headers, json=json.loads(body) if body else None, follow_redirects=False
        )
        if r.status_code != status:
            failures.append((req, status, r.status_code, r.text[:200]))
        elif type_:
            problem(r, status, type_)
    assert not failures, failures
