"""ngsi_subscriptions: NGSI-LD subscriptions owned by the credential that made them

Revision ID: 0008_live_subscriptions
Revises: 0006_tokens
"""

import sqlalchemy as sa
from alembic import op

import sensorhub.db

revision: str = "0008_live_subscriptions"
down_revision: str | None = "0006_tokens"


def upgrade() -> None:
    op.create_table(
        "ngsi_subscriptions",
        sa.Column(
            "pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("sub_id", sa.String(length=512), nullable=False),
        sa.Column("credential_id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=300), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sensorhub.db.UTCDateTime(), nullable=True),
        sa.Column("throttling", sa.Float(), nullable=True),
        sa.Column("disabled_reason", sa.String(length=300), nullable=True),
        sa.Column("times_sent", sa.Integer(), nullable=False),
        sa.Column("times_failed", sa.Integer(), nullable=False),
        sa.Column("last_notification", sensorhub.db.UTCDateTime(), nullable=True),
        sa.Column("last_success", sensorhub.db.UTCDateTime(), nullable=True),
        sa.Column("last_failure", sensorhub.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", sensorhub.db.UTCDateTime(), nullable=False),
        sa.Column("modified_at", sensorhub.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["credential_id"], ["credentials.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("credential_id", "sub_id", name="uq_ngsi_subscriptions_owner_id"),
    )
    with op.batch_alter_table("ngsi_subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ngsi_subscriptions_credential_id"), ["credential_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ngsi_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ngsi_subscriptions_credential_id"))
    op.drop_table("ngsi_subscriptions")
