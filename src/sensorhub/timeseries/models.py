"""Series, raw measurements and their rollups.

Measurements are keyed ``(series_id, ts)`` with ``ts`` in int64 microseconds since the Unix epoch (UTC),
which keeps the hot paths free of datetime objects and lets the table be distributed by ``series_id``
(e.g. Citus) without code changes. On PostgreSQL the table is range-partitioned by ``ts`` (monthly
partitions created on demand at ingest, plus a default partition); on SQLite it is a WITHOUT ROWID
table, i.e. the primary key *is* the storage order.

Rollups (1 minute, 1 hour, 1 day) hold mergeable partial aggregates per bucket and are maintained in the
ingest transaction, so long-range downsampled reads never scan raw rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DDL,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column

from sensorhub.db import Base, UTCDateTime, utcnow

MINUTE_US = 60_000_000
HOUR_US = 3_600_000_000
DAY_US = 86_400_000_000

# Rollup levels, finest first: (width in microseconds, table name).
ROLLUP_LEVELS: tuple[tuple[int, str], ...] = (
    (MINUTE_US, "rollup_1m"),
    (HOUR_US, "rollup_1h"),
    (DAY_US, "rollup_1d"),
)


# The topic of data that names none (Akenza's default; every series created before topics existed).
DEFAULT_TOPIC = "default"
MAX_TOPIC_LENGTH = 200


class Series(Base):
    """One numeric attribute of one entity on one topic (Akenza's data topic; ``default`` unless a
    write names another), with its latest point (for telemetry)."""

    __tablename__ = "series"
    __table_args__ = (
        UniqueConstraint("entity_pk", "attribute", "topic", name="uq_series_entity_attribute_topic"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    entity_pk: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("entities.pk", ondelete="CASCADE")
    )
    attribute: Mapped[str] = mapped_column(String(200))
    topic: Mapped[str] = mapped_column(
        String(MAX_TOPIC_LENGTH), default=DEFAULT_TOPIC, server_default=DEFAULT_TOPIC
    )
    unit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The latest point: microseconds since the epoch (UTC) and its value.
    last_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_value: Mapped[float | None] = mapped_column(Float, nullable=True)


# Measurements and rollups carry no declared foreign key: a per-row referential check would cost more
# than the insert itself on bulk ingest (about 6x on PostgreSQL COPY). Deleting a series (directly or by
# cascade from its entity) removes its points through the ``series_cascade`` trigger instead.
SERIES_CASCADE_SQLITE = """
CREATE TRIGGER IF NOT EXISTS series_cascade AFTER DELETE ON series FOR EACH ROW BEGIN
  DELETE FROM measurements WHERE series_id = OLD.id;
  DELETE FROM rollup_1m WHERE series_id = OLD.id;
  DELETE FROM rollup_1h WHERE series_id = OLD.id;
  DELETE FROM rollup_1d WHERE series_id = OLD.id;
END
"""
SERIES_CASCADE_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION sensorhub_series_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM measurements WHERE series_id = OLD.id;
  DELETE FROM rollup_1m WHERE series_id = OLD.id;
  DELETE FROM rollup_1h WHERE series_id = OLD.id;
  DELETE FROM rollup_1d WHERE series_id = OLD.id;
  RETURN OLD;
END $$
"""
SERIES_CASCADE_PG_TRIGGER = (
    "CREATE TRIGGER series_cascade AFTER DELETE ON series FOR EACH ROW "
    "EXECUTE FUNCTION sensorhub_series_cascade()"
)


measurements = Table(
    "measurements",
    Base.metadata,
    Column("series_id", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    PrimaryKeyConstraint("series_id", "ts", name="pk_measurements"),
    sqlite_with_rowid=False,
    postgresql_partition_by="RANGE (ts)",
)

# ``metadata.create_all`` (tests, tools) must leave a usable table behind on PostgreSQL as well; the
# migration creates the same default partition.
event.listen(
    measurements,
    "after_create",
    DDL("CREATE TABLE IF NOT EXISTS measurements_default PARTITION OF measurements DEFAULT").execute_if(  # type: ignore[no-untyped-call,unused-ignore]
        dialect="postgresql"
    ),
)


def _rollup_table(name: str) -> Table:
    return Table(
        name,
        Base.metadata,
        Column("series_id", BigInteger, nullable=False),
        Column("bucket_start", BigInteger, nullable=False),
        Column("count", BigInteger, nullable=False),
        Column("sum", Float, nullable=False),
        Column("min", Float, nullable=False),
        Column("max", Float, nullable=False),
        Column("first_ts", BigInteger, nullable=False),
        Column("first", Float, nullable=False),
        Column("last_ts", BigInteger, nullable=False),
        Column("last", Float, nullable=False),
        # Sum of squares (migration 0009_rollup_sumsq): NGSI-LD temporal stddev and sumsq without raw scans.
        Column("sumsq", Float, nullable=False, server_default="0"),
        PrimaryKeyConstraint("series_id", "bucket_start", name=f"pk_{name}"),
        sqlite_with_rowid=False,
    )


rollup_1m = _rollup_table("rollup_1m")
rollup_1h = _rollup_table("rollup_1h")
rollup_1d = _rollup_table("rollup_1d")

# The same trigger for ``metadata.create_all`` (tests, tools) as the migration creates.
event.listen(rollup_1d, "after_create", DDL(SERIES_CASCADE_SQLITE).execute_if(dialect="sqlite"))  # type: ignore[no-untyped-call,unused-ignore]
event.listen(rollup_1d, "after_create", DDL(SERIES_CASCADE_PG_FUNCTION).execute_if(dialect="postgresql"))  # type: ignore[no-untyped-call,unused-ignore]
event.listen(rollup_1d, "after_create", DDL(SERIES_CASCADE_PG_TRIGGER).execute_if(dialect="postgresql"))  # type: ignore[no-untyped-call,unused-ignore]
