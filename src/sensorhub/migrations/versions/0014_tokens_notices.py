"""notifications: expiry notices (and other notices to a person), each recorded once, with e-mail state

Revision ID: 0008_tokens
Revises: 0013_live_subscription_counts
"""

import sqlalchemy as sa
from alembic import op

import sensorhub.db

revision: str = "0008_tokens"
down_revision: str | None = "0013_live_subscription_counts"


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("credential_id", sa.String(length=36), nullable=True),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("link", sa.String(length=300), nullable=True),
        sa.Column("created_at", sensorhub.db.UTCDateTime(), nullable=False),
        sa.Column("read_at", sensorhub.db.UTCDateTime(), nullable=True),
        sa.Column("email_to", sa.String(length=320), nullable=True),
        sa.Column("email_status", sa.String(length=16), nullable=False),
        sa.Column("email_attempts", sa.Integer(), nullable=False),
        sa.Column("email_error", sa.String(length=500), nullable=True),
        sa.Column("email_next_at", sensorhub.db.UTCDateTime(), nullable=True),
        sa.Column("email_sent_at", sensorhub.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "dedupe_key", name="uq_notifications_user_key"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notifications_credential_id"), ["credential_id"], unique=False)
        batch_op.create_index("ix_notifications_email", ["email_status", "email_next_at"], unique=False)


def downgrade() -> None:
    op.drop_table("notifications")
