"""sign-up links e-mailed for invitations to addresses without an account (token stored as a digest)

Revision ID: 0019_invitation_signups
Revises: 0018_push_topic
"""

import sqlalchemy as sa
from alembic import op

import sensorhub.db

revision: str = "0019_invitation_signups"
down_revision: str | None = "0018_push_topic"


def upgrade() -> None:
    op.create_table(
        "invitation_signups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("invitation_id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sensorhub.db.UTCDateTime(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("sent_at", sensorhub.db.UTCDateTime(), nullable=True),
        sa.Column("used_at", sensorhub.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", sensorhub.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["invitation_id"], ["invitations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("invitation_id"),
        sa.UniqueConstraint("token_digest"),
    )


def downgrade() -> None:
    op.drop_table("invitation_signups")
