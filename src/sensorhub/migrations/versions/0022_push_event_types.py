"""push event types: an outbox event carries every type of its entity, not only the first

A multi-typed NGSI-LD entity (revision 0017) is matched by a subscription or rule for any of its types.
Events recorded before this revision carry their entity's first type only (``extra_types`` NULL).

Revision ID: 0022_push_event_types
Revises: 0021_auto_provision
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0022_push_event_types"
down_revision: str | None = "0021_auto_provision"


def upgrade() -> None:
    with op.batch_alter_table("push_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("extra_types", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("push_events", schema=None) as batch_op:
        batch_op.drop_column("extra_types")
