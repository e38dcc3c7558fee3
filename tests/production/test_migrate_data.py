"""``sensorhub migrate-data``: an embedded installation moves to PostgreSQL and keeps working."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.migrate import upgrade
from sensorhub.timeseries import service as ts
from sensorhub.timeseries.models import Series
from tests.builders import World, bearer, login
from tests.conftest import TEST_SECRET_KEY
from tests.production.conftest import SENSORHUB


def _seed(data_dir: Path) -> tuple[str, int]:
    """An embedded installation with people, tokens, entities and measurements over several months."""
    settings = Settings(data_dir=data_dir, env="test")
    ctx = AppContext.build(settings)
    upgrade(ctx.db)
    w = World(ctx)
    w.org("acme", ("north", "south"))
    w.user("owner@example.com", "acme", "owner")
    w.user("ana@example.com", "acme", "member")
    token = w.pat("ana@example.com", ["timeseries", "entities"], name="notebook")
    w.api_key("acme", ["entities"], name="bi")
    dev = w.entity("acme", "north", "urn:ngsi-ld:Device:d1", temperature=20.5)
    w.entity("acme", "south", "urn:ngsi-ld:Device:d2")
    # A web session row too (sessions table).
    with TestClient(create_app(settings, ctx)) as c:
        login(c, "owner@example.com")
    points = 0
    with ctx.db.transaction() as s:
        from sqlalchemy import select

        from sensorhub.entities.models import Entity

        e = s.scalar(select(Entity).where(Entity.entity_id == dev.entity_id))
        assert e is not None
        series = ts.get_or_create_series(s, e, "temperature", "Cel")
        base = int(datetime(2025, 11, 20, tzinfo=UTC).timestamp() * 1_000_000)
        # Three calendar months, one point per 10 minutes.
        stamps = [base + i * 600_000_000 for i in range(10_000)]
        accepted, _ = ts.bulk_insert(s, series.id, stamps, [float(i % 37) for i in range(len(stamps))])
        points += accepted
    ctx.db.dispose()
    return token, points


def _counts(url: str) -> dict[str, int]:
    eng = create_engine(url)
    with eng.connect() as c:
        names = (
            c.execute(
                text(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = "
                    "'public' AND c.relkind IN ('r','p') AND NOT c.relispartition AND c.relname <> 'alembic_version'"
                )
            )
            .scalars()
            .all()
        )
        out = {n: int(c.execute(text(f'SELECT count(*) FROM "{n}"')).scalar_one()) for n in names}
    eng.dispose()
    return out


def test_migrate_sqlite_to_postgresql_keeps_tokens_and_rows(
    tmp_path: Path, fresh_pg: Callable[[bool], str]
) -> None:
    src_dir = tmp_path / "embedded"
    token, points = _seed(src_dir)
    target = fresh_pg(False)  # empty: migrate-data creates the schema

    r = subprocess.run(
        [SENSORHUB, "migrate-data", "--from", f"sqlite:///{src_dir / 'sensorhub.db'}", "--to", target],
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "measurements" in r.stdout and "MISMATCH" not in r.stdout and "done:" in r.stdout

    counts = _counts(target)
    assert counts["measurements"] == points == 10_000
    assert counts["credentials"] == 2 and counts["users"] == 2 and counts["entities"] == 2
    assert counts["rollup_1d"] > 60 and counts["series"] == 1
    # Monthly partitions were created (nothing was dumped into the default partition).
    eng = create_engine(target)
    with eng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM measurements_default")).scalar_one() == 0
    eng.dispose()

    # The same token works against an app on PostgreSQL; ids keep being generated after the copy.
    pg_dir = tmp_path / "pg-data"
    pg_dir.mkdir()
    settings = Settings(data_dir=pg_dir, database_url=target, env="test", secret_key=TEST_SECRET_KEY)
    ctx = AppContext.build(settings)
    with TestClient(create_app(settings, ctx)) as c:
        me = c.get("/api/tokens/self", headers=bearer(token))
        assert me.status_code == 200, me.text
        assert me.json()["effective_scopes"] == ["entities", "timeseries"]
        login(c, "ana@example.com")
        assert [t["name"] for t in c.get("/api/tokens").json()] == ["notebook"]
    w = World(ctx)
    w.entity("acme", "north", "urn:ngsi-ld:Device:d3")  # integer primary key from the reset sequence
    with ctx.db.transaction() as s:
        series = s.query(Series).one()
        # A later month than any migrated one: its partition is created on demand, beside the copied ones.
        later = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1_000_000)
        assert ts.bulk_insert(s, series.id, [later], [1.0]) == (1, 0)
    ctx.db.dispose()

    # A second run refuses the non-empty target; --force replaces its contents.
    r = subprocess.run(
        [SENSORHUB, "migrate-data", "--from-data-dir", str(src_dir), "--to", target],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and "not empty" in r.stderr
    r = subprocess.run(
        [SENSORHUB, "migrate-data", "--from-data-dir", str(src_dir), "--to", target, "--force"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert _counts(target)["entities"] == 2 and _counts(target)["measurements"] == 10_000


def test_migrate_refuses_a_source_at_another_revision(
    tmp_path: Path, fresh_pg: Callable[[bool], str]
) -> None:
    src_dir = tmp_path / "old"
    settings = Settings(data_dir=src_dir, env="test")
    ctx = AppContext.build(settings)
    upgrade(ctx.db, "0001")
    ctx.db.dispose()
    r = subprocess.run(
        [SENSORHUB, "migrate-data", "--from-data-dir", str(src_dir), "--to", fresh_pg(False)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and "sensorhub init" in r.stderr
    shutil.rmtree(src_dir)
