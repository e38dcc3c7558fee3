"""rollups: sum of squares per bucket (NGSI-LD temporal stddev and sumsq from the rollups)

Revision ID: 0006_sumsq
Revises: 0008_live_subscriptions

The new column is filled from the stored points once, here: the minute level from the raw rows, the
hour and day levels from the minute level (every point is in exactly one minute bucket). From then on
ingest and import keep it exact, like count and sum.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0006_sumsq"
down_revision: str | None = "0008_live_subscriptions"

LEVELS = (("rollup_1m", 60_000_000), ("rollup_1h", 3_600_000_000), ("rollup_1d", 86_400_000_000))


def _bucket(col: str, w: int) -> str:
    return f"({col} - ((({col} % {w}) + {w}) % {w}))"


def upgrade() -> None:
    for table, _w in LEVELS:
        op.add_column(table, sa.Column("sumsq", sa.Float(), nullable=False, server_default="0"))
    # UPDATE … FROM works on PostgreSQL and on SQLite >= 3.33.
    w = LEVELS[0][1]
    op.execute(
        f"UPDATE rollup_1m SET sumsq = a.s FROM (SELECT series_id, {_bucket('ts', w)} AS b, "  # noqa: S608 (constants)
        "sum(value * value) AS s FROM measurements GROUP BY 1, 2) AS a "
        "WHERE rollup_1m.series_id = a.series_id AND rollup_1m.bucket_start = a.b"
    )
    for table, width in LEVELS[1:]:
        op.execute(
            f"UPDATE {table} SET sumsq = a.s FROM (SELECT series_id, {_bucket('bucket_start', width)} AS b, "  # noqa: S608 (constants)
            "sum(sumsq) AS s FROM rollup_1m GROUP BY 1, 2) AS a "
            f"WHERE {table}.series_id = a.series_id AND {table}.bucket_start = a.b"
        )


def downgrade() -> None:
    for table, _w in reversed(LEVELS):
        op.drop_column(table, "sumsq")
