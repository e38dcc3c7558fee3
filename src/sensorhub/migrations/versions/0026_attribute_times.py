"""entities: attributes' createdAt/modifiedAt (``entities.attr_times``)

Revision ID: 0026_attribute_times
Revises: 0025_entity_datasets

The NGSI-LD system attributes of every attribute instance: attribute name → datasetId ("" for the
instance without one) → [createdAt, modifiedAt] in microseconds since the epoch (UTC), ``location``
included; kept by every ORM write of an entity (see sensorhub.entities.models). An existing entity's
attributes were written at some time between the entity's creation and its last change, which is all
that is known of them: each gets the entity's createdAt as its createdAt and the entity's modifiedAt
as its modifiedAt (bounds, never later than the truth for createdAt nor earlier for modifiedAt).
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from sensorhub.migrations._backfill import batches, epoch_us

revision: str = "0026_attribute_times"
down_revision: str | None = "0025_entity_datasets"


def upgrade() -> None:
    with op.batch_alter_table("entities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attr_times", sa.JSON(), nullable=True))
    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    entities = sa.table(
        "entities",
        sa.column("pk", sa.BigInteger()),
        sa.column("attrs", sa.JSON()),
        sa.column("datasets", sa.JSON()),
        sa.column("location", sa.JSON()),
        sa.column("created_at", sa.DateTime()),
        sa.column("modified_at", sa.DateTime()),
        sa.column("attr_times", sa.JSON()),
    )
    c = entities.c
    query = sa.select(c.pk, c.attrs, c.datasets, c.location, c.created_at, c.modified_at)
    for batch in batches(conn, query, c.pk):
        rows = []
        for pk, attrs, datasets, location, created, modified in batch:
            at = [epoch_us(created), epoch_us(modified or created)]
            times: dict[str, dict[str, list[int]]] = {}
            for name, attr in (attrs or {}).items():
                times.setdefault(name, {})[_key(attr)] = at
            for name, insts in (datasets or {}).items():
                for i in insts or []:
                    times.setdefault(name, {})[_key(i)] = at
            if location is not None:
                times["location"] = {"": at}
            if times:
                rows.append({"k": pk, "t": times})
        if rows:
            conn.execute(
                sa.update(entities).where(c.pk == sa.bindparam("k")).values(attr_times=sa.bindparam("t")),
                rows,
            )


def _key(attr: Any) -> str:
    d = attr.get("datasetId") if isinstance(attr, dict) else None
    return d if isinstance(d, str) else ""


def downgrade() -> None:
    with op.batch_alter_table("entities", schema=None) as batch_op:
        batch_op.drop_column("attr_times")
