"""No token, from a header, the query string or a body, ever reaches a log."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.logs import redact
from tests.builders import World, login


def test_requests_at_debug_level_leave_no_secret_in_logs(
    settings: Settings, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    s2 = settings.model_copy(update={"allow_query_token": True})
    app = create_app(s2, AppContext.build(s2))
    world.org("acme")
    world.user("a@example.com", "acme", "owner")
    pat = world.pat("a@example.com", ["timeseries"])
    caplog.set_level(logging.DEBUG)
    with TestClient(app) as c:
        c.get("/api/tokens/self", headers={"Authorization": f"Bearer {pat}"})
        c.get(f"/api/tokens/self?token={pat}")
        c.get("/api/tokens/self", headers={"x-api-key": pat})
        c.get("/api/tokens/self", headers={"Authorization": f"Bearer {pat[:-1]}X"})
        csrf = login(c, "a@example.com")
        created = c.post("/api/tokens", json={"name": "n", "scopes": ["entities"]}).json()["token"]
        c.post(f"/api/tokens/{'x' * 8}/rotate")
        # Also what third-party code might log, and uvicorn's access-log format.
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "1.2.3.4", "GET",
                                                 f"/api/data/recent?token={pat}&limit=5", "1.1", 200)
        logging.getLogger("x").debug("headers: %s", {"authorization": f"Bearer {created}"})
        logging.getLogger("x").debug(f"body: {{'token': '{created}'}}")
        try:
            raise ValueError(f"bad token {created}")
        except ValueError:
            logging.getLogger("x").exception("failed")
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert caplog.records, "expected some log output at DEBUG"
    for secret in (pat, created, pat[9:30], created[9:30], csrf, "correct-horse-battery"):
        assert secret not in text


def test_redact_keeps_the_useful_rest() -> None:
    line = redact('GET /api/data/recent?token=shub_pat_abc123&limit=20 HTTP/1.1')
    assert "shub_pat_abc123" not in line and "limit=20" in line
