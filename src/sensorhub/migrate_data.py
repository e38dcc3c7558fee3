"""``sensorhub migrate-data``: move an embedded (SQLite) installation into PostgreSQL.

1. The target schema is created/upgraded with Alembic (the same migrations ``sensorhub init`` runs); the
   source must be at the same revision (``sensorhub init --data-dir …`` upgrades it).
2. Every table is copied in foreign-key order — generic over the target's tables (the ORM's and any
   others: rollups, measurements…), reflected, so new tables need no change here — in batches, with
   COPY, inside **one** target transaction: a failed run leaves the target as it was.
3. Measurements go through the same monthly partitions the ingest path creates.
4. Sequences are moved past the copied ids, row counts are compared per table (a mismatch aborts the
   transaction), and the counts are printed.

Tokens keep working: only their SHA-256 digests are stored and there is no server pepper. Sessions and
signed export URLs depend on the server secret: carry ``<data dir>/secret.key`` over as
``SENSORHUB_SECRET_KEY`` (the command reminds you). Stop the server (or make it read-only) first: rows
written to the source after the copy started are not copied.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from sensorhub.config import Settings
from sensorhub.db import Database
from sensorhub.migrate import current_revision, upgrade

SKIP_TABLES = frozenset({"alembic_version"})


class MigrateDataError(Exception):
    """The migration cannot proceed; the message says why and what to do."""


@dataclass(frozen=True)
class TableCount:
    table: str
    source: int
    target: int

    @property
    def ok(self) -> bool:
        return self.source == self.target


def sqlite_path(source: str) -> Path:
    """``sqlite:///abs/path.db`` (or ``sqlite:////abs/path.db``) or a plain file path → the file."""
    if source.startswith("sqlite:"):
        rest = source.split(":", 1)[1]
        if not rest.startswith("///"):
            raise MigrateDataError(f"expected sqlite:///path/to/sensorhub.db, got {source!r}")
        source = rest[3:]
    path = Path(source)
    if not path.is_file():
        raise MigrateDataError(f"no SQLite database at {path}")
    return path


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _target_tables(conn: Connection) -> list[str]:
    """Regular and partitioned tables of the public schema, not partitions themselves."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        )
    ).scalars()
    return [r for r in rows if r not in SKIP_TABLES]


def _source_revision(src: sqlite3.Connection) -> str | None:
    try:
        row = src.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    return str(row[0]) if row else None


def _ensure_measurement_partitions(tconn: Connection, src: sqlite3.Connection) -> None:
    """Create the monthly partitions the source's measurements fall into, exactly as ingest would (rows in
    the default partition would block creating a month's partition later)."""
    from sensorhub.timeseries.postgres import PostgresStore

    rows = src.execute(
        "SELECT min(ts) FROM measurements GROUP BY strftime('%Y-%m', ts / 1000000, 'unixepoch')"
    ).fetchall()
    if not rows:
        return
    ts = np.array(sorted(r[0] for r in rows), dtype=np.int64)
    with Session(bind=tconn) as s:
        PostgresStore(s).ensure_partitions(ts)


def _copy_table(
    tconn: Connection,
    src: sqlite3.Connection,
    table: str,
    columns: list[str],
    order_by: list[str],
    batch: int,
) -> None:
    cols = ", ".join(_q(c) for c in columns)
    order = " ORDER BY " + ", ".join(_q(c) for c in order_by) if order_by else ""
    # Raw SQLite values (text timestamps and JSON, 0/1 booleans) are valid COPY text input for the
    # PostgreSQL column types our models declare.
    cur = src.execute(f"SELECT {cols} FROM {_q(table)}{order}")  # noqa: S608 (names from the schema)
    pg = tconn.connection.driver_connection
    assert pg is not None
    with pg.cursor() as pcur, pcur.copy(f"COPY {_q(table)} ({cols}) FROM STDIN") as cp:
        while rows := cur.fetchmany(batch):
            for row in rows:
                cp.write_row(row)


def _reset_sequences(tconn: Connection, table: str, columns: list[str]) -> None:
    for col in columns:
        seq = tconn.execute(
            text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": _q(table), "c": col}
        ).scalar()
        if seq:
            tconn.execute(
                text(
                    f"SELECT setval(:seq, COALESCE(MAX({_q(col)}), 1), MAX({_q(col)}) IS NOT NULL) "  # noqa: S608
                    f"FROM {_q(table)}"
                ),
                {"seq": seq},
            )


def migrate_data(
    source: str,
    target_url: str,
    *,
    force: bool = False,
    batch_size: int = 10_000,
    echo: Callable[[str], None] = print,
) -> list[TableCount]:
    """Copy the SQLite installation at ``source`` into the PostgreSQL database ``target_url``."""
    path = sqlite_path(source)
    if not target_url.startswith(("postgresql", "postgres:")):
        raise MigrateDataError("--to must be a postgresql://… URL")
    settings = Settings(database_url=target_url, data_dir=path.parent)
    db = Database(settings)
    src = sqlite3.connect(str(path), isolation_level=None)
    try:
        echo(f"upgrading the target schema ({db.engine.url.render_as_string(hide_password=True)})")
        upgrade(db)
        head = current_revision(db)
        src_rev = _source_revision(src)
        if src_rev != head:
            raise MigrateDataError(
                f"the source is at schema revision {src_rev}, the target at {head}: upgrade the source first "
                f"with `sensorhub init --data-dir {path.parent}` (or the same sensorhub version)"
            )
        # One read transaction: every table is copied from the same snapshot of the source.
        src.execute("BEGIN")
        src_tables = {
            r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        }
        counts: list[TableCount] = []
        with db.engine.begin() as tconn:
            names = _target_tables(tconn)
            meta = MetaData()
            meta.reflect(bind=tconn, only=names)
            ordered = [t for t in meta.sorted_tables if t.name in names]
            non_empty = [
                t.name
                for t in ordered
                if tconn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {_q(t.name)})")).scalar()  # noqa: S608
            ]
            if non_empty:
                if not force:
                    raise MigrateDataError(
                        "the target database is not empty ("
                        + ", ".join(non_empty[:5])
                        + (", …" if len(non_empty) > 5 else "")
                        + "); use --force to replace its contents"
                    )
                echo(f"--force: emptying {len(non_empty)} non-empty target tables")
                tconn.execute(
                    text("TRUNCATE " + ", ".join(_q(t.name) for t in ordered) + " RESTART IDENTITY CASCADE")
                )
            ignored = sorted(t for t in src_tables - set(names) - SKIP_TABLES if not t.startswith("sqlite_"))
            if ignored:
                echo("not copied (no such table in the target schema): " + ", ".join(ignored))
            for t in ordered:
                if t.name not in src_tables:
                    echo(f"  {t.name}: not in the source, left empty")
                    continue
                src_cols = {r[1] for r in src.execute(f"PRAGMA table_info({_q(t.name)})").fetchall()}
                columns = [c.name for c in t.columns if c.name in src_cols]
                pk = [c.name for c in t.primary_key.columns if c.name in src_cols]
                if t.name == "measurements":
                    _ensure_measurement_partitions(tconn, src)
                _copy_table(tconn, src, t.name, columns, pk, batch_size)
                _reset_sequences(tconn, t.name, columns)
                n_src = int(src.execute(f"SELECT count(*) FROM {_q(t.name)}").fetchone()[0])  # noqa: S608
                n_dst = int(tconn.execute(text(f"SELECT count(*) FROM {_q(t.name)}")).scalar_one())  # noqa: S608
                counts.append(TableCount(t.name, n_src, n_dst))
                echo(f"  {t.name:<28} {n_src:>12} → {n_dst:>12}  {'ok' if n_src == n_dst else 'MISMATCH'}")
            bad = [c for c in counts if not c.ok]
            if bad:
                # Raising inside the transaction rolls every copied row back.
                raise MigrateDataError(
                    "row counts differ for " + ", ".join(c.table for c in bad) + "; nothing kept"
                )
        src.execute("COMMIT")
        total = sum(c.target for c in counts)
        echo(f"done: {len(counts)} tables, {total} rows copied and verified")
        echo(
            "next: run sensorhub with SENSORHUB_DATABASE_URL set to the target; keep the server secret "
            f"(SENSORHUB_SECRET_KEY = the contents of {path.parent / 'secret.key'}) so that web sessions "
            "and signed export links stay valid; access tokens keep working as they are"
        )
        return counts
    finally:
        src.close()
        db.dispose()


def run(
    source: str | None,
    data_dir: Path | None,
    target: str | None,
    force: bool,
    batch_size: int,
    echo: Callable[[str], None],
) -> list[TableCount]:
    """CLI entry: resolve ``--from`` / ``--from-data-dir`` / ``--to`` (default SENSORHUB_DATABASE_URL)."""
    if (source is None) == (data_dir is None):
        raise MigrateDataError(
            "give exactly one of --from sqlite:///path/sensorhub.db or --from-data-dir DIR"
        )
    if source is None:
        assert data_dir is not None
        source = str(data_dir / "sensorhub.db")
    if not target:
        import os

        target = os.environ.get("SENSORHUB_DATABASE_URL")
    if not target:
        raise MigrateDataError("give --to postgresql://user@host/db (or set SENSORHUB_DATABASE_URL)")
    return migrate_data(source, target, force=force, batch_size=batch_size, echo=echo)
