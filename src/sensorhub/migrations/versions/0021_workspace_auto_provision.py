"""workspaces: auto-provisioning of devices on their first ingested message (off by default)

Revision ID: 0021_auto_provision
Revises: 0020_push_delivery_retention
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0021_auto_provision"
down_revision: str | None = "0020_push_delivery_retention"


def upgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("auto_provision", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("auto_provision_type", sa.String(length=200), nullable=False, server_default="Device")
        )
        batch_op.add_column(sa.Column("auto_provision_credentials", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("auto_provision_credentials")
        batch_op.drop_column("auto_provision_type")
        batch_op.drop_column("auto_provision")
