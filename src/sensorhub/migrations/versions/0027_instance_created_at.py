"""entities: the createdAt of attribute history instances (``attribute_instances.created_us``)

Revision ID: 0027_instance_created_at
Revises: 0026_attribute_times

When each instance of the non-numeric attribute history was written, µs since the epoch (UTC): what
NGSI-LD ``timeproperty=createdAt`` reads. Every write sets it from now on. Existing rows: an instance
dated by its write (no observedAt; every deletion instance) gets that time, which is exact; one dated by
its observedAt was written no earlier than the entity was created nor than it was observed, and no
later than the entity's last change: it gets max(entity createdAt, observedAt) within that bound.
"""

import sqlalchemy as sa
from alembic import op

from sensorhub.migrations._backfill import batches, epoch_us

revision: str = "0027_instance_created_at"
down_revision: str | None = "0026_attribute_times"


def upgrade() -> None:
    with op.batch_alter_table("attribute_instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_us", sa.BigInteger(), nullable=True))
    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    instances = sa.table(
        "attribute_instances",
        sa.column("id", sa.BigInteger()),
        sa.column("entity_pk", sa.BigInteger()),
        sa.column("deleted", sa.Boolean()),
        sa.column("ts", sa.BigInteger()),
        sa.column("instance", sa.JSON()),
        sa.column("created_us", sa.BigInteger()),
    )
    entities = sa.table(
        "entities",
        sa.column("pk", sa.BigInteger()),
        sa.column("created_at", sa.DateTime()),
        sa.column("modified_at", sa.DateTime()),
    )
    i, e = instances.c, entities.c
    query = sa.select(i.id, i.deleted, i.ts, i.instance, e.created_at, e.modified_at).select_from(
        instances.join(entities, e.pk == i.entity_pk)
    )
    for batch in batches(conn, query, i.id):
        rows = []
        for row_id, deleted, ts, instance, created, modified in batch:
            observed = isinstance(instance, dict) and isinstance(instance.get("observedAt"), str)
            if deleted or not observed:
                at = int(ts)
            else:
                lo, hi = epoch_us(created), epoch_us(modified or created)
                at = min(max(lo, int(ts)), max(lo, hi))
            rows.append({"k": row_id, "c": at})
        conn.execute(
            sa.update(instances).where(i.id == sa.bindparam("k")).values(created_us=sa.bindparam("c")), rows
        )


def downgrade() -> None:
    with op.batch_alter_table("attribute_instances", schema=None) as batch_op:
        batch_op.drop_column("created_us")
