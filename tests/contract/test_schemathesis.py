"""schemathesis against /api/openapi.json, in-process (ASGI), as part of ``make test``.

Every token-authenticated and public operation is exercised with a read token (all read scopes) and the
ingest routes with an ingest key, with a bounded number of generated examples per operation, and every
answer is checked: no server error, and status code, content type, body schema and headers as documented.

Session (management) routes are excluded: they need a login cookie plus the CSRF token echoed in
``X-CSRF-Token``, and generated bodies would create and delete accounts mid-run; their contract is pinned
by tests/contract/test_openapi.py and tests/test_management_api.py instead.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sensorhub.api.routes import iter_api_routes, route_guard
from tests.builders import World, bearer

MAX_EXAMPLES = int(os.environ.get("SENSORHUB_SCHEMATHESIS_EXAMPLES", "20"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Valid inputs (must be served as documented) and invalid ones (must be a documented 4xx, never a 500).
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
READ_SCOPES = ["entities", "timeseries", "export", "telemetry"]
DEVICE = "urn:ngsi-ld:Device:st-1"
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "cookie"})


def _guards(app: FastAPI) -> dict[tuple[str, str], str]:
    return {
        (m.upper(), r.path): guard[0]
        for r in iter_api_routes(app.routes)
        if (guard := route_guard(r)) is not None
        for m in r.methods or ()
    }


def _seed(world: World, client: TestClient) -> tuple[str, str]:
    world.org("acme", ("main",))
    world.user("a@acme.test", "acme", "owner")
    world.entity("acme", "main", DEVICE, "Device", name="station one")
    ingest_key = world.api_key("acme", ["ingest"], name="ingest")
    r = client.post(
        f"/v3/devices/{DEVICE}/backfill",
        json=[{"timestamp": f"2026-01-01T00:0{i}:00Z", "data": {"temperature": 20.5 + i}} for i in range(5)],
        headers={"x-api-key": ingest_key},
    )
    assert r.status_code == 200, r.text
    return world.pat("a@acme.test", READ_SCOPES, name="read"), ingest_key


def _run(schema: Any, label: str, headers: dict[str, str], failures: list[str]) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation, mode in itertools.product(operations, MODES):

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            # Our credential, not one generated from the security schemes.
            case.headers = {
                k: v for k, v in (case.headers or {}).items() if k.lower() not in CREDENTIAL_HEADERS
            }
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            continue  # no parameters, so no invalid input to generate (e.g. GET /healthz in negative mode)
        except Exception as e:
            failures.append(f"[{label}, {mode.value}] {operation.method.upper()} {operation.path}\n{e}")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_api_conforms_to_its_openapi_document(app: FastAPI, client: TestClient, world: World) -> None:
    read_token, ingest_key = _seed(world, client)
    guards = _guards(app)
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)

    def kinds(*wanted: str) -> Any:
        return lambda ctx: guards.get((ctx.operation.method.upper(), ctx.operation.path)) in wanted

    failures: list[str] = []
    # Read token: every token route (the ingest route answers 403 insufficient_scope) and public routes.
    # The live stream is endless by design (the in-process client waits for whole answers): its
    # contract is pinned by tests/live/test_stream.py against a real server.
    token_routes = schema.include(kinds("scope", "token", "public")).exclude(path="/api/stream")
    _run(token_routes, "read token", bearer(read_token), failures)
    # Ingest key: the backfill route.
    ingest_only = schema.include(path_regex=r"^/v3/devices/")
    _run(ingest_only, "ingest key", {"x-api-key": ingest_key}, failures)
    assert not failures, "\n\n".join(failures)
