"""``sensorhub demo``: a realistic tenant with fresh credentials, created at run time and printed once."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from sensorhub.accounts import service as accounts
from sensorhub.accounts.models import Organisation
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.db import Database
from sensorhub.migrate import upgrade
from sensorhub.tokens import service as tokens

DEMO_ORG = "demo"
DEMO_EMAIL = "demo@example.com"
DEMO_WORKSPACES = {"farm": "Demo Farm", "greenhouse": "Greenhouse"}
DEMO_SCOPES = ["entities", "timeseries", "export", "telemetry", "ingest"]


@dataclass
class DemoResult:
    base_url: str
    email: str
    password: str | None
    token: str
    seeded: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def banner(self) -> str:
        b = self.base_url
        lines = [
            "",
            "sensorhub demo is ready",
            "=======================",
            f"  URL:       {b}/   (API docs: {b}/api/docs)",
            f"  login:     {self.email}",
            f"  password:  {self.password}   (shown once)"
            if self.password
            else "  password:  (unchanged from the first run)",
            f"  token:     {self.token}",
            "             (a fresh Personal Access Token with all scopes; shown once)",
        ]
        if self.seeded:
            lines.append(
                "  data:      "
                + ", ".join(f"{v:,} {k}" for k, v in self.seeded.items())
                + f" in {self.seconds:.1f}s"
            )
        lines += [
            "",
            "Try it:",
            f"  export SENSORHUB_URL={b} SENSORHUB_TOKEN={self.token}",
            '  curl -H "Authorization: Bearer $SENSORHUB_TOKEN" "$SENSORHUB_URL/api/tokens/self"',
            '  curl -H "Authorization: Bearer $SENSORHUB_TOKEN" "$SENSORHUB_URL/ngsi-ld/v1/entities?type=AgriParcel&limit=5"',
            '  curl -H "Authorization: Bearer $SENSORHUB_TOKEN" '
            '"$SENSORHUB_URL/api/timeseries/v2/entities/urn:ngsi-ld:WeatherObserved:station-1/data'
            '?attribute=temperature&start_time=2026-01-01T00:00:00Z&end_time=2026-01-31T00:00:00Z&resolution=200"',
            "",
            '  python -c \'import os, requests; print(requests.get(os.environ["SENSORHUB_URL"] + "/api/managements",',
            '      headers={"Authorization": "Bearer " + os.environ["SENSORHUB_TOKEN"]}).json())\'',
            "",
        ]
        return "\n".join(lines)


def seed(settings: Settings, base_url: str = "http://127.0.0.1:8000") -> DemoResult:
    t0 = time.monotonic()
    # The context's listener tells a running server to drop cached credentials after each commit
    # that changes who may do what.
    db = AppContext.build(settings).db
    upgrade(db)
    password: str | None = None
    with db.transaction() as s:
        org = accounts.ensure_org(s, DEMO_ORG, "Demo Organisation")
        for slug, name in DEMO_WORKSPACES.items():
            accounts.ensure_workspace(s, org, slug, name)
        user = accounts.get_user_by_email(s, DEMO_EMAIL)
        if user is None:
            password = secrets.token_urlsafe(12)
            user = accounts.create_user(s, DEMO_EMAIL, password, "Demo Owner")
            accounts.set_membership(s, user, org, "owner")
        # A fresh token on every run (the previous demo tokens keep their own expiry).
        name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        minted = tokens.create_pat(
            s,
            user,
            tokens.NewToken(name, DEMO_SCOPES, tokens.ExpirySpec(expires_in_days=30)),
            settings=settings,
            created_by=user.id,
        )
        token = minted.token
        org_id = org.id
    seeded = _seed_data(db, org_id)
    db.dispose()
    return DemoResult(base_url, DEMO_EMAIL, password, token, seeded, time.monotonic() - t0)


def _seed_data(db: Database, org_id: str) -> dict[str, int]:
    """Entities and readings (see :mod:`sensorhub.demo_data`); idempotent."""
    try:
        from sensorhub import demo_data  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return {}
    with db.transaction() as s:
        org = s.get_one(Organisation, org_id)
        wss = {w.slug: w for w in accounts.list_workspaces(s, org)}
        counts: dict[str, int] = demo_data.seed(s, org, wss)
    return counts
