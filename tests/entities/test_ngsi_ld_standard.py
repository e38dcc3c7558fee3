"""NGSI-LD consumption as the standard (ETSI GS CIM 009 V1.8) defines it, read through a token.

The scenarios follow the ETSI NGSI-LD API conformance suite's consumption test cases (entity query and
retrieve 018/019, discovery 022-027): our own code, their situations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sensorhub.config import Settings
from tests.builders import World, bearer
from tests.entities.helpers import problem, put_entities

E = "/ngsi-ld/v1/entities"
LD = "http://www.w3.org/ns/json-ld#context"
SUITE_CONTEXT = {
    "@context": {
        "suite": "https://ngsi-ld-test-suite/context#",
        "Building": "suite:Building",
        "Vehicle": "suite:Vehicle",
        "airQualityLevel": "suite:airQualityLevel",
        "name": "suite:name",
        "locatedAt": "suite:locatedAt",
    }
}


@pytest.fixture
def token(world: World, settings: Settings, tmp_path: Path) -> str:
    ctx_dir = tmp_path / "contexts"
    ctx_dir.mkdir()
    (ctx_dir / "suite.jsonld").write_text(json.dumps(SUITE_CONTEXT))
    settings.ngsi_ld_context_dir = ctx_dir
    world.org("acme", ("farm",))
    world.user("owner@acme.test", "acme", "owner")
    items: list[dict[str, Any]] = [
        {
            "id": "urn:ngsi-ld:Parcel:p1",
            "type": "Parcel",
            "area": {
                "type": "Property",
                "value": 3.5,
                "unitCode": "HAR",
                "observedAt": "2026-01-02T00:00:00Z",
            },
            "crop": {"type": "VocabProperty", "vocab": "wheat"},
            "label": {"type": "LanguageProperty", "languageMap": {"en": "North field", "de": "Nordfeld"}},
            "soil": {"type": "JsonProperty", "json": {"ph": 6.5, "layers": [1, 2]}},
            "samples": {"type": "ListProperty", "valueList": [1, 2, 3]},
            "farm": {"type": "Relationship", "object": "urn:ngsi-ld:Farm:f1"},
        },
        {
            "id": "urn:ngsi-ld:Parcel:p2",
            "type": "Parcel",
            "area": {"type": "Property", "value": 1.0, "observedAt": "2025-06-01T00:00:00Z"},
            "farm": {"type": "Relationship", "object": "urn:ngsi-ld:Farm:f2"},
        },
        {
            "id": "urn:ngsi-ld:Farm:f1",
            "type": "Farm",
            "name": "Alpha",
            "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:o1"},
        },
        {"id": "urn:ngsi-ld:Farm:f2", "type": "Farm", "name": "Beta"},
        {"id": "urn:ngsi-ld:Person:o1", "type": "Person", "name": "Olga"},
        {
            "id": "urn:ngsi-ld:Building:b1",
            "type": "https://ngsi-ld-test-suite/context#Building",
            "https://ngsi-ld-test-suite/context#airQualityLevel": 4,
        },
    ]
    put_entities(world, "acme", "farm", items)
    # Another tenant with its own type and attribute names: never visible to acme's token.
    world.org("other")
    put_entities(world, "other", "main", [{"id": "urn:ngsi-ld:Secret:1", "type": "Secret", "codename": "x"}])
    return world.pat("owner@acme.test", ["entities"])


def _ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [e["id"].rsplit(":", 1)[1] for e in r.json()]


def test_discovery_lists_only_what_the_token_reads(client: TestClient, token: str) -> None:
    h = bearer(token)
    r = client.get("/ngsi-ld/v1/types", headers=h)
    assert r.status_code == 200 and r.json()["type"] == "EntityTypeList"
    assert r.json()["typeList"] == ["Farm", "Parcel", "Person", "https://ngsi-ld-test-suite/context#Building"]
    assert "Secret" not in r.text and "codename" not in r.text
    details = client.get("/ngsi-ld/v1/types?details=true", headers=h).json()
    parcel = next(t for t in details if t["typeName"] == "Parcel")
    assert parcel["type"] == "EntityType"
    assert parcel["id"] == "https://uri.etsi.org/ngsi-ld/default-context/Parcel"
    assert parcel["attributeNames"] == ["area", "crop", "farm", "label", "samples", "soil"]
    info = client.get("/ngsi-ld/v1/types/Parcel", headers=h).json()
    assert info["type"] == "EntityTypeInfo" and info["entityCount"] == 2
    kinds = {a["attributeName"]: a["attributeTypes"] for a in info["attributeDetails"]}
    assert kinds["farm"] == ["Relationship"] and kinds["crop"] == ["VocabProperty"]
    problem(client.get("/ngsi-ld/v1/types/Secret", headers=h), 404, "ResourceNotFound")

    attrs = client.get("/ngsi-ld/v1/attributes", headers=h).json()
    assert attrs["type"] == "AttributeList" and "codename" not in attrs["attributeList"]
    assert {"area", "farm", "name", "owner"} <= set(attrs["attributeList"])
    one = client.get("/ngsi-ld/v1/attributes/name", headers=h).json()
    assert one["attributeCount"] == 3 and one["typeNames"] == ["Farm", "Person"]
    assert one["attributeTypes"] == ["Property"]
    listed = client.get("/ngsi-ld/v1/attributes?details=true", headers=h).json()
    assert next(a for a in listed if a["attributeName"] == "farm")["typeNames"] == ["Parcel"]
    problem(client.get("/ngsi-ld/v1/attributes/codename", headers=h), 404, "ResourceNotFound")
    # Discovery is token-only (the entities scope), like the entity reads.
    problem(client.get("/ngsi-ld/v1/types"), 401, "Unauthorized")


def test_user_context_expands_and_compacts_names(client: TestClient, token: str) -> None:
    link = (
        f'<http://testserver/ngsi-ld/v1/jsonldContexts/suite.jsonld>; rel="{LD}"; type="application/ld+json"'
    )
    h = {**bearer(token), "Link": link}
    r = client.get(E, params={"type": "Building"}, headers=h)
    assert r.status_code == 200, r.text
    (b,) = r.json()
    assert b["type"] == "Building" and b["airQualityLevel"] == {"type": "Property", "value": 4}
    assert r.links[LD]["url"].endswith("/jsonldContexts/suite.jsonld")
    assert _ids(client.get(E, params={"q": "airQualityLevel>3"}, headers=h)) == ["b1"]
    # Without the context the same names are the default vocabulary's: no match.
    assert _ids(client.get(E, params={"type": "Building"}, headers=bearer(token))) == []
    # ld+json answers carry the request's @context.
    r = client.get(E, params={"type": "Building"}, headers={**h, "Accept": "application/ld+json"})
    assert r.json()[0]["@context"].endswith("/jsonldContexts/suite.jsonld")
    assert client.get("/ngsi-ld/v1/types", headers=h).json()["typeList"][-1] == "Building"
    # The hosted context itself is public, as JSON-LD processors fetch it.
    assert client.get("/ngsi-ld/v1/jsonldContexts/suite.jsonld").json() == SUITE_CONTEXT
    assert any(
        u.endswith("ngsi-ld-core-context-v1.8.jsonld")
        for u in client.get("/ngsi-ld/v1/jsonldContexts").json()
    )

    # A context the server may not fetch (SSRF) is a 400 naming it, at once.
    bad = f'<http://169.254.169.254/latest/ctx.jsonld>; rel="{LD}"'
    body = problem(
        client.get(E, params={"type": "X"}, headers={**bearer(token), "Link": bad}), 400, "BadRequestData"
    )
    assert "169.254.169.254" in body["detail"] and "allow-list" in body["detail"]
    # An inline @context in an application/ld+json Query body.
    q = {"type": "Query", "entities": [{"type": "Building"}], "@context": SUITE_CONTEXT["@context"]}
    r = client.post(
        "/ngsi-ld/v1/entityOperations/query",
        content=json.dumps(q),
        headers={**bearer(token), "Content-Type": "application/ld+json"},
    )
    assert _ids(r) == ["b1"]
    problem(
        client.post("/ngsi-ld/v1/entityOperations/query", json=q, headers=bearer(token)),
        400,
        "BadRequestData",
    )


QUERIES: list[tuple[dict[str, str], list[str]]] = [
    ({"q": "farm==urn:ngsi-ld:Farm:f1"}, ["p1"]),  # Relationship object, unquoted URI
    ({"q": 'farm=="urn:ngsi-ld:Farm:f2"'}, ["p2"]),
    ({"q": "area.observedAt>=2026-01-01T00:00:00Z"}, ["p1"]),  # dotted path to a sub-attribute
    ({"q": 'area.unitCode=="HAR"'}, ["p1"]),
    ({"q": "soil[ph]>6"}, ["p1"]),  # inside a JsonProperty
    ({"q": 'crop=="wheat"'}, ["p1"]),  # VocabProperty
    ({"q": 'label[de]=="Nordfeld"'}, ["p1"]),  # LanguageProperty, one language
    ({"q": "area==0.5..2"}, ["p2"]),
    ({"type": "Parcel,Farm", "q": "name"}, ["f1", "f2"]),
    ({"type": "(Parcel|Farm);Parcel"}, ["p1", "p2"]),
    ({"type": "Parcel;Farm"}, []),  # an entity has one type here
    ({"scopeQ": "/farm/#"}, []),  # no entity has a scope
]


def test_query_language(client: TestClient, token: str) -> None:
    # One data set, every case (a fixture per case would cost a database per case).
    got = {str(p): _ids(client.get(E, params=p, headers=bearer(token))) for p, _ in QUERIES}
    assert got == {str(p): want for p, want in QUERIES}


def test_representations(client: TestClient, token: str) -> None:
    h = bearer(token)
    one = f"{E}/urn:ngsi-ld:Parcel:p1"
    kv = client.get(one, params={"options": "keyValues"}, headers=h).json()
    assert (
        kv["crop"] == "wheat" and kv["samples"] == [1, 2, 3] and kv["soil"] == {"ph": 6.5, "layers": [1, 2]}
    )
    assert kv["farm"] == "urn:ngsi-ld:Farm:f1" and kv["label"] == {"en": "North field", "de": "Nordfeld"}
    concise = client.get(one, params={"format": "concise"}, headers=h).json()
    assert concise["area"] == {"value": 3.5, "unitCode": "HAR", "observedAt": "2026-01-02T00:00:00Z"}
    assert concise["farm"] == {"object": "urn:ngsi-ld:Farm:f1"}
    de = client.get(one, params={"lang": "de", "attrs": "label"}, headers=h).json()
    assert de["label"] == {"type": "Property", "value": "Nordfeld", "lang": "de"}
    # A priority list ranks by quality, not position; tags compare case-insensitively, de-CH falls back
    # to de; a language the entity lacks (or *) gives one it has, named in lang.
    for lang, want in [("en;q=0.2,de;q=0.9", "de"), ("DE", "de"), ("de-CH", "de"), ("pt", "en"), ("*", "en")]:
        got = client.get(one, params={"lang": lang, "attrs": "label"}, headers=h).json()["label"]
        assert got["type"] == "Property" and got["lang"] == want, (lang, got)
    problem(client.get(one, params={"lang": "de;q=2"}, headers=h), 400, "BadRequestData")
    picked = client.get(one, params={"pick": "id,area"}, headers=h).json()
    assert set(picked) == {"id", "area"}
    omitted = client.get(E, params={"type": "Farm", "omit": "owner,name"}, headers=h).json()
    assert all(set(e) == {"id", "type"} for e in omitted)
    problem(client.get(one, params={"options": "keyValues,concise"}, headers=h), 400, "BadRequestData")
    # An id that is not a URI is a 400 (ETSI 018_02), an unknown one a 404.
    problem(client.get(f"{E}/thisisaninvaliduri", headers=h), 400, "BadRequestData")
    problem(client.get(f"{E}/urn:ngsi-ld:Parcel:nope", headers=h), 404, "ResourceNotFound")
    # type on retrieve: the entity only if it has that type.
    problem(client.get(one, params={"type": "Farm"}, headers=h), 404, "ResourceNotFound")
    assert client.get(one, params={"type": "Parcel"}, headers=h).status_code == 200


def test_join_inline_and_flat(client: TestClient, token: str) -> None:
    h = bearer(token)
    r = client.get(E, params={"type": "Parcel", "join": "inline", "joinLevel": "2"}, headers=h)
    p1 = r.json()[0]
    assert p1["farm"]["entity"]["id"] == "urn:ngsi-ld:Farm:f1"
    assert p1["farm"]["entity"]["owner"]["entity"]["name"]["value"] == "Olga"
    # An entity reached on several paths is joined on each (f1 is on the page and linked from p1).
    both = client.get(
        E,
        params={
            "local": "true",
            "id": "urn:ngsi-ld:Farm:f1,urn:ngsi-ld:Parcel:p1",
            "join": "inline",
            "joinLevel": "2",
        },
        headers=h,
    ).json()
    assert both[0]["owner"]["entity"]["name"]["value"] == "Olga"
    assert both[1]["farm"]["entity"]["owner"]["entity"]["name"]["value"] == "Olga"
    kv = client.get(
        E,
        params={"local": "true", "id": "urn:ngsi-ld:Parcel:p2", "join": "inline", "options": "keyValues"},
        headers=h,
    )
    assert kv.json()[0]["farm"] == {"id": "urn:ngsi-ld:Farm:f2", "type": "Farm", "name": "Beta"}
    flat = client.get(E, params={"type": "Parcel", "join": "flat"}, headers=h)
    assert [e["id"].rsplit(":", 1)[1] for e in flat.json()] == ["p1", "p2", "f1", "f2"]
    # containedBy stops a loop (and what is already known is not fetched again).
    r = client.get(
        E, params={"type": "Parcel", "join": "inline", "containedBy": "urn:ngsi-ld:Farm:f1"}, headers=h
    )
    assert "entity" not in r.json()[0]["farm"] and r.json()[1]["farm"]["entity"]["name"]["value"] == "Beta"
    problem(client.get(E, params={"type": "Parcel", "joinLevel": "2"}, headers=h), 400, "BadRequestData")
    # pick with braces projects the linked entity (ETSI 019_20).
    r = client.get(E, params={"type": "Parcel", "join": "inline", "pick": "id,farm{id,name}"}, headers=h)
    p1 = r.json()[0]
    assert set(p1) == {"id", "farm"} and set(p1["farm"]["entity"]) == {"id", "name"}
    r = client.get(E, params={"type": "Parcel", "join": "flat", "pick": "id,farm{id,name}"}, headers=h)
    assert [set(e) for e in r.json()] == [{"id", "farm"}] * 2 + [{"id", "name"}] * 2
    problem(client.get(E, params={"pick": "id,farm{id"}, headers=h), 400, "BadRequestData")


def test_refusals_paging_and_paths(client: TestClient, token: str) -> None:
    h = bearer(token)
    body = problem(client.get(E, params={"type": "Parcel", "csf": "x"}, headers=h), 501, "NotImplemented")
    assert "csf" in body["detail"]
    asc = _ids(client.get(E, params={"type": "Parcel"}, headers=h))
    assert _ids(client.get(E, params={"type": "Parcel", "orderBy": "id;desc"}, headers=h)) == asc[::-1]
    body = problem(
        client.get(E, params={"type": "Parcel", "orderBy": "x;y"}, headers=h), 400, "BadRequestData"
    )
    assert "orderBy" in body["detail"]
    body = problem(
        client.get(E, params={"type": "Parcel", "datasetId": "x"}, headers=h), 400, "BadRequestData"
    )
    assert "datasetId" in body["detail"]
    body = problem(client.get(E, params={"type": "Parcel", "limt": "3"}, headers=h), 400, "BadRequestData")
    assert "limt" in body["detail"]
    problem(client.get(E, params={"scopeQ": "farm/#"}, headers=h), 400, "InvalidRequest")
    problem(client.get(E, params={"type": "Parcel;"}, headers=h), 400, "InvalidRequest")
    # The standard's spelling with a trailing slash is served, not redirected.
    r = client.get(f"{E}/?type=Farm", headers=h, follow_redirects=False)
    assert r.status_code == 200 and len(r.json()) == 2
    assert client.get("/ngsi-ld/v1/types/", headers=h, follow_redirects=False).status_code == 200
    # prev and next links.
    r = client.get(E, params={"local": "true", "limit": "2", "offset": "2"}, headers=h)
    assert set(r.links) >= {"next", "prev"}
    prev = client.get(r.links["prev"]["url"], headers=h)
    assert _ids(prev) == ["b1", "f1"] and "prev" not in prev.links


def test_allow_listed_contexts_are_fetched_bounded_and_cached(
    client: TestClient, token: str, settings: Settings
) -> None:
    """A context server that answers, one that sends garbage, one too large and one that never answers:
    a 200, two 400s and a 503 within the timeout; the good one is fetched once."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []
    stall = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            if self.path == "/slow.jsonld":
                stall.wait(5)
                return
            body = {
                "/good.jsonld": json.dumps(SUITE_CONTEXT).encode(),
                "/garbage.jsonld": b"<html>not json</html>",
                "/huge.jsonld": b'{"@context": {"a": "' + b"x" * 300_000 + b'"}}',
            }.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    settings.ngsi_ld_context_allow = [base + "/"]
    settings.ngsi_ld_context_timeout_seconds = 0.5
    try:

        def get(name: str) -> Any:
            link = f'<{base}/{name}>; rel="{LD}"'
            return client.get(E, params={"type": "Building"}, headers={**bearer(token), "Link": link})

        assert _ids(get("good.jsonld")) == ["b1"]
        assert _ids(get("good.jsonld")) == ["b1"]
        assert hits.count("/good.jsonld") == 1  # cached
        assert "not JSON" in problem(get("garbage.jsonld"), 400, "BadRequestData")["detail"]
        assert "larger than" in problem(get("huge.jsonld"), 400, "BadRequestData")["detail"]
        t0 = time.monotonic()
        problem(get("slow.jsonld"), 503, "LdContextNotAvailable")
        assert time.monotonic() - t0 < 3
        problem(get("missing.jsonld"), 503, "LdContextNotAvailable")
    finally:
        stall.set()
        srv.shutdown()
        srv.server_close()
