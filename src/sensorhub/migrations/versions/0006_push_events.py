"""push: the outbox of ingested points (push_events) and the leases of periodic jobs (job_leases)

Revision ID: 0006_push
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

import sensorhub.db

revision: str = "0006_push"
down_revision: str | None = "0005"


def upgrade() -> None:
    op.create_table(
        "push_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=36), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("entity_ref", sa.String(length=512), nullable=False),
        sa.Column("entity_type", sa.String(length=200), nullable=False),
        sa.Column("attribute", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("time_us", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("unit", sa.String(length=64), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_time_us", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sensorhub.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("lease_until", sensorhub.db.UTCDateTime(), nullable=False),
        sa.Column("last_started_at", sensorhub.db.UTCDateTime(), nullable=True),
        sa.Column("last_finished_at", sensorhub.db.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
    op.drop_table("push_events")
