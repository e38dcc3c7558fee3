"""time series: series, measurements (partitioned on PostgreSQL), rollups

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import sensorhub.db

revision: str = "0002"
down_revision: str | None = "0001"

ROLLUPS = ("rollup_1m", "rollup_1h", "rollup_1d")

CASCADE_SQLITE = """
CREATE TRIGGER IF NOT EXISTS series_cascade AFTER DELETE ON series FOR EACH ROW BEGIN
  DELETE FROM measurements WHERE series_id = OLD.id;
  DELETE FROM rollup_1m WHERE series_id = OLD.id;
  DELETE FROM rollup_1h WHERE series_id = OLD.id;
  DELETE FROM rollup_1d WHERE series_id = OLD.id;
END
"""
CASCADE_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION sensorhub_series_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM measurements WHERE series_id = OLD.id;
  DELETE FROM rollup_1m WHERE series_id = OLD.id;
  DELETE FROM rollup_1h WHERE series_id = OLD.id;
  DELETE FROM rollup_1d WHERE series_id = OLD.id;
  RETURN OLD;
END $$
"""
CASCADE_PG_TRIGGER = (
    "CREATE TRIGGER series_cascade AFTER DELETE ON series FOR EACH ROW "
    "EXECUTE FUNCTION sensorhub_series_cascade()"
)


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _id_type() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "series",
        sa.Column("id", _id_type(), autoincrement=True, nullable=False),
        sa.Column("entity_pk", _id_type(), nullable=False),
        sa.Column("attribute", sa.String(length=200), nullable=False),
        sa.Column("unit", sa.String(length=64), nullable=True),
        sa.Column("created_at", sensorhub.db.UTCDateTime(), nullable=False),
        sa.Column("last_ts", sa.BigInteger(), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["entity_pk"], ["entities.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("entity_pk", "attribute", name="uq_series_entity_attribute"),
    )
    op.create_table(
        "measurements",
        sa.Column("series_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("series_id", "ts", name="pk_measurements"),
        sqlite_with_rowid=False,
        postgresql_partition_by="RANGE (ts)",
    )
    if op.get_bind().dialect.name == "postgresql":
        # Monthly partitions are created on demand by the ingest path; the default partition catches
        # anything written around it.
        op.execute("CREATE TABLE IF NOT EXISTS measurements_default PARTITION OF measurements DEFAULT")
    for name in ROLLUPS:
        op.create_table(
            name,
            sa.Column("series_id", sa.BigInteger(), nullable=False),
            sa.Column("bucket_start", sa.BigInteger(), nullable=False),
            sa.Column("count", sa.BigInteger(), nullable=False),
            sa.Column("sum", sa.Float(), nullable=False),
            sa.Column("min", sa.Float(), nullable=False),
            sa.Column("max", sa.Float(), nullable=False),
            sa.Column("first_ts", sa.BigInteger(), nullable=False),
            sa.Column("first", sa.Float(), nullable=False),
            sa.Column("last_ts", sa.BigInteger(), nullable=False),
            sa.Column("last", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("series_id", "bucket_start", name=f"pk_{name}"),
            sqlite_with_rowid=False,
        )
    # No declared foreign keys on measurements/rollups (a per-row check costs more than the insert on
    # bulk ingest); a trigger removes a deleted series' points instead.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CASCADE_PG_FUNCTION)
        op.execute(CASCADE_PG_TRIGGER)
    else:
        op.execute(CASCADE_SQLITE)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS series_cascade" + (" ON series" if _pg() else ""))
    if _pg():
        op.execute("DROP FUNCTION IF EXISTS sensorhub_series_cascade()")
    for name in reversed(ROLLUPS):
        op.drop_table(name)
    # Dropping the partitioned parent drops every partition with it.
    op.drop_table("measurements")
    op.drop_table("series")
