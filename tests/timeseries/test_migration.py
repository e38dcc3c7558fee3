"""Migration 0002 upgrades and downgrades on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from sqlalchemy import inspect, text

from sensorhub.config import Settings
from sensorhub.db import Database
from sensorhub.migrate import alembic_config, current_revision, upgrade

TABLES = {"series", "measurements", "rollup_1m", "rollup_1h", "rollup_1d"}


def _roundtrip(db: Database) -> None:
    upgrade(db)
    assert current_revision(db) is not None
    names = set(inspect(db.engine).get_table_names())
    assert TABLES <= names
    cfg = alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert not (TABLES & set(inspect(db.engine).get_table_names()))
    upgrade(db)
    assert TABLES <= set(inspect(db.engine).get_table_names())


def test_migration_roundtrip_sqlite(tmp_path: Path) -> None:
    db = Database(Settings(data_dir=tmp_path))
    _roundtrip(db)
    with db.engine.connect() as c:
        sql = c.execute(text("SELECT sql FROM sqlite_master WHERE name = 'measurements'")).scalar()
    assert "WITHOUT ROWID" in sql.upper()
    db.dispose()


def test_migration_roundtrip_postgresql(tmp_path: Path, fresh_pg: Callable[[bool], str]) -> None:
    db = Database(Settings(data_dir=tmp_path, database_url=fresh_pg(False)))
    _roundtrip(db)
    with db.engine.connect() as c:
        kind = c.execute(text("SELECT relkind FROM pg_class WHERE relname = 'measurements'")).scalar()
        default = c.execute(
            text("SELECT count(*) FROM pg_class WHERE relname = 'measurements_default'")
        ).scalar()
    assert kind == "p" and default == 1
    db.dispose()


def _row_counts(db: Database, tables: set[str]) -> dict[str, int]:
    with db.engine.connect() as c:
        return {t: c.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() or 0 for t in sorted(tables)}


def test_upgrading_from_the_previous_release_keeps_every_row(tmp_path: Path) -> None:
    """A database made by the previous release (schema 0005) upgrades without losing a row. On SQLite the
    migrations that rebuild a table (organisations, series) run with foreign keys off: with them on,
    dropping the old table deleted its rows first and cascaded into workspaces, entities and series."""
    from sensorhub.context import AppContext
    from sensorhub.migrate import downgrade
    from sensorhub.timeseries import service
    from tests.builders import World

    ctx = AppContext.build(Settings(data_dir=tmp_path))
    upgrade(ctx.db)
    world = World(ctx)
    world.org("acme")
    world.user("a@x.test", "acme", "member")
    world.pat("a@x.test")
    world.api_key("acme")
    e = world.entity("acme", "main", "urn:ngsi-ld:Device:kept")
    with ctx.db.transaction() as s:
        sid = service.get_or_create_series(s, e, "temp", "CEL").id
        service.bulk_insert(s, sid, [60_000_000 * i for i in range(120)], [float(i) for i in range(120)])
    old = {
        "organisations", "workspaces", "users", "memberships", "grants", "credentials", "entities",
        "series", "measurements", "rollup_1m", "rollup_1h", "rollup_1d",
    }  # fmt: skip
    before = _row_counts(ctx.db, old)
    assert all(before.values()), before
    downgrade(ctx.db, "0005")
    assert _row_counts(ctx.db, old) == before
    upgrade(ctx.db)
    assert _row_counts(ctx.db, old) == before
    with ctx.db.engine.connect() as c:
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
    ctx.db.dispose()
