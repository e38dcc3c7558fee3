"""token rotation with a grace period: superseded credentials and the organisation's maximum grace

Revision ID: 0006_tokens
Revises: 0006_push
"""

import sqlalchemy as sa
from alembic import op

import sensorhub.db

revision: str = "0006_tokens"
down_revision: str | None = "0006_push"

LIVE = "revoked_at IS NULL"
LIVE_NOT_SUPERSEDED = "revoked_at IS NULL AND superseded_at IS NULL"


def _name_index(where: str) -> None:
    op.create_index(
        "uq_credentials_owner_name_live",
        "credentials",
        ["owner_key", "name"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("superseded_at", sensorhub.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("rotated_to", sa.String(length=36), nullable=True))
    op.drop_index("uq_credentials_owner_name_live", table_name="credentials")
    _name_index(LIVE_NOT_SUPERSEDED)
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("max_rotation_grace_days", sa.Integer(), nullable=False, server_default="7")
        )


def downgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("max_rotation_grace_days")
    op.drop_index("uq_credentials_owner_name_live", table_name="credentials")
    _name_index(LIVE)
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_column("rotated_to")
        batch_op.drop_column("superseded_at")
