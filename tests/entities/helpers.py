"""Shared helpers for the entity tests: real rows through the real import service."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient

from sensorhub.accounts import service as accounts
from sensorhub.config import Settings
from sensorhub.entities.service import import_entities
from tests.builders import World, bearer


def put_entities(world: World, org: str, ws: str, items: list[dict[str, Any]]) -> None:
    with world.ctx.db.transaction() as s:
        o = accounts.get_org(s, org)
        import_entities(s, o, accounts.get_workspace(s, o, ws), items)


def owner_token(world: World, items: list[dict[str, Any]]) -> str:
    """An organisation ``acme`` (workspace ``farm``) holding ``items``, and an entities token of its owner."""
    world.org("acme", ("farm",))
    world.user("owner@acme.test", "acme", "owner")
    put_entities(world, "acme", "farm", items)
    return world.pat("owner@acme.test", ["entities"])


def short_ids(client: TestClient, token: str, **params: str) -> list[str]:
    """The entities ``GET /ngsi-ld/v1/entities`` lists for ``params``: the last part of each id, in order."""
    r = client.get("/ngsi-ld/v1/entities", params=params, headers=bearer(token))
    assert r.status_code == 200, r.text
    return [e["id"].rsplit(":", 1)[1] for e in r.json()]


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(settings: Settings, **extra_env: str) -> Iterator[str]:
    """A real ``uvicorn`` server on the test's database (its base URL while the block runs)."""
    port = _free_port()
    env = dict(os.environ, SENSORHUB_DATA_DIR=str(settings.data_dir), SENSORHUB_ENV="test", **extra_env)
    if settings.database_url:
        env["SENSORHUB_DATABASE_URL"] = settings.database_url
        env["SENSORHUB_SECRET_KEY"] = settings.resolved_secret_key
    log = (settings.data_dir.parent / f"uvicorn-{port}.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "sensorhub.app:factory",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,  # a file, not a pipe: a server that writes much to stderr never blocks on it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # a loaded CI machine (xdist workers) starts it slowly
        while True:
            try:
                requests.get(f"{base}/ngsi-ld/v1/entities", timeout=1)
                break
            except requests.RequestException:  # not up yet (or too busy to answer within 1 s)
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = Path(log.name).read_text(errors="replace")
                    pytest.fail(f"uvicorn did not start: {err[-2000:]}")
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
