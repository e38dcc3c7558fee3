"""exports: metadata of export files (signed, expiring downloads)

Revision ID: 0004
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import sensorhub.db

revision: str = "0004"
down_revision: str | None = "0002"


def upgrade() -> None:
    op.create_table(
        "exports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("credential_id", sa.String(length=36), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("row_cap", sa.BigInteger(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("store", sa.String(length=16), nullable=False),
        sa.Column("object_key", sa.String(length=1024), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sensorhub.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sensorhub.db.UTCDateTime(), nullable=False),
        sa.Column("deleted_at", sensorhub.db.UTCDateTime(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["credential_id"], ["credentials.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_exports_credential_created", "exports", ["credential_id", "created_at"])
    op.create_index("ix_exports_expires", "exports", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_exports_expires", table_name="exports")
    op.drop_index("ix_exports_credential_created", table_name="exports")
    op.drop_table("exports")
