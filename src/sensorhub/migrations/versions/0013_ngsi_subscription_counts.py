"""ngsi_subscriptions: notification counts and times come from the delivery log

Revision ID: 0013_live_subscription_counts
Revises: 0010_geo
"""

import sqlalchemy as sa
from alembic import op

import sensorhub.db

revision: str = "0013_live_subscription_counts"
down_revision: str | None = "0010_geo"

COLUMNS = ("times_sent", "times_failed", "last_success", "last_failure")


def upgrade() -> None:
    with op.batch_alter_table("ngsi_subscriptions", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table("ngsi_subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("times_sent", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("times_failed", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("last_success", sensorhub.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_failure", sensorhub.db.UTCDateTime(), nullable=True))
