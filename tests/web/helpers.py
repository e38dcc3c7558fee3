"""Shared helpers for the web UI tests (TestClient and browser)."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from sensorhub.accounts import service as accounts
from sensorhub.context import AppContext
from sensorhub.entities.models import Entity
from sensorhub.kit.time import to_us
from sensorhub.timeseries import service as ts
from tests.builders import PASSWORD

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_CSRF_RE = re.compile(r'name="login_csrf" value="([^"]+)"')
SECRET_RE = re.compile(r'id="new-token"[^>]*value="([^"]+)"')


def web_login(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Log in through the HTML form; returns the session's CSRF token (read from a page)."""
    page = client.get("/login")
    m = LOGIN_CSRF_RE.search(page.text)
    assert m, page.text
    r = client.post(
        "/login",
        data={"email": email, "password": password, "login_csrf": m.group(1), "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/integrations").text)


def csrf_of(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "no csrf_token field in the page"
    return m.group(1)


def revealed(html: str) -> str | None:
    m = SECRET_RE.search(html)
    return m.group(1) if m else None


def seed_series(
    ctx: AppContext,
    org: str,
    entity_id: str,
    attribute: str,
    unit: str | None,
    end: datetime,
    hours: int = 72,
    step_minutes: int = 10,
) -> int:
    """A smooth daily curve ending at ``end``; returns the number of points."""
    with ctx.db.transaction() as s:
        o = accounts.get_org(s, org)
        e = s.scalar(select(Entity).where(Entity.org_id == o.id, Entity.entity_id == entity_id))
        assert e is not None
        series = ts.get_or_create_series(s, e, attribute, unit)
        n = hours * 60 // step_minutes
        times = [end - timedelta(minutes=step_minutes * (n - i)) for i in range(n)]
        values = [
            round(18 + 6 * math.sin(2 * math.pi * (t.hour * 60 + t.minute) / 1440) + (i % 7) * 0.15, 3)
            for i, t in enumerate(times)
        ]
        ts.bulk_insert(s, series.id, [to_us(t) for t in times], values)
    return n
