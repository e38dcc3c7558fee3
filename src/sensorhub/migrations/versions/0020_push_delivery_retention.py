"""delivery log retention: what pruned NGSI-LD subscription deliveries counted stays on the subscription

Revision ID: 0020_push_delivery_retention
Revises: 0019_invitation_signups
"""

import sqlalchemy as sa
from alembic import op

import sensorhub.db

revision: str = "0020_push_delivery_retention"
down_revision: str | None = "0019_invitation_signups"


def upgrade() -> None:
    with op.batch_alter_table("ngsi_subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pruned_sent", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("pruned_failed", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("pruned_last_success", sensorhub.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("pruned_last_failure", sensorhub.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ngsi_subscriptions", schema=None) as batch_op:
        for name in ("pruned_last_failure", "pruned_last_success", "pruned_failed", "pruned_sent"):
            batch_op.drop_column(name)
