"""push topic: outbox events carry the Akenza topic of their series; rules may watch one topic or all

Every existing event is on the topic ``default`` (until now only the default topic's points were
recorded). Existing rules with a condition keep watching the default topic; rules without one
(forward everything) watch every topic (``NULL``).

Revision ID: 0018_push_topic
Revises: 0017_entity_types
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0018_push_topic"
down_revision: str | None = "0017_entity_types"


def upgrade() -> None:
    with op.batch_alter_table("push_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("topic", sa.String(length=200), nullable=False, server_default="default")
        )
    with op.batch_alter_table("push_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("topic", sa.String(length=200), nullable=True))
    rules = sa.table("push_rules", sa.column("id", sa.String), sa.column("condition", sa.JSON))
    bind = op.get_bind()
    with_condition = [r.id for r in bind.execute(sa.select(rules.c.id, rules.c.condition)) if r.condition]
    if with_condition:
        bind.execute(
            sa.text("UPDATE push_rules SET topic = 'default' WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": with_condition},
        )


def downgrade() -> None:
    # Events of other topics than the default one were not recorded before this revision.
    op.execute("DELETE FROM push_events WHERE topic <> 'default'")
    with op.batch_alter_table("push_rules", schema=None) as batch_op:
        batch_op.drop_column("topic")
    with op.batch_alter_table("push_events", schema=None) as batch_op:
        batch_op.drop_column("topic")
