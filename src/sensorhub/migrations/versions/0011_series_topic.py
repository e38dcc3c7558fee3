"""series topic: the Akenza topic becomes a dimension of stored data

A series is now (entity, attribute, topic); every existing series gets the topic ``default``.

Revision ID: 0006_series_topic
Revises: 0009_push_delivery
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0006_series_topic"
down_revision: str | None = "0009_push_delivery"

# SQLite rebuilds the table to change its unique constraint (a table constraint cannot be dropped);
# dropping the old table drops its trigger, which is created again (same text as 0002).
CASCADE_SQLITE = """
CREATE TRIGGER IF NOT EXISTS series_cascade AFTER DELETE ON series FOR EACH ROW BEGIN
  DELETE FROM measurements WHERE series_id = OLD.id;
  DELETE FROM rollup_1m WHERE series_id = OLD.id;
  DELETE FROM rollup_1h WHERE series_id = OLD.id;
  DELETE FROM rollup_1d WHERE series_id = OLD.id;
END
"""


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _pg():
        op.add_column(
            "series", sa.Column("topic", sa.String(length=200), nullable=False, server_default="default")
        )
        op.drop_constraint("uq_series_entity_attribute", "series", type_="unique")
        op.create_unique_constraint(
            "uq_series_entity_attribute_topic", "series", ["entity_pk", "attribute", "topic"]
        )
        return
    with op.batch_alter_table("series", recreate="always") as b:
        b.add_column(sa.Column("topic", sa.String(length=200), nullable=False, server_default="default"))
        b.drop_constraint("uq_series_entity_attribute", type_="unique")
        b.create_unique_constraint("uq_series_entity_attribute_topic", ["entity_pk", "attribute", "topic"])
    op.execute(CASCADE_SQLITE)


def downgrade() -> None:
    # Series of other topics than the default one cannot be folded back into (entity, attribute).
    op.execute("DELETE FROM series WHERE topic <> 'default'")
    if _pg():
        op.drop_constraint("uq_series_entity_attribute_topic", "series", type_="unique")
        op.create_unique_constraint("uq_series_entity_attribute", "series", ["entity_pk", "attribute"])
        op.drop_column("series", "topic")
        return
    with op.batch_alter_table("series", recreate="always") as b:
        b.drop_constraint("uq_series_entity_attribute_topic", type_="unique")
        b.create_unique_constraint("uq_series_entity_attribute", ["entity_pk", "attribute"])
        b.drop_column("topic")
    op.execute(CASCADE_SQLITE)
