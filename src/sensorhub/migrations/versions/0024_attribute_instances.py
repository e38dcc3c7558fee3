"""entities: the temporal evolution of non-numeric attributes (``attribute_instances``)

Revision ID: 0024_attribute_instances
Revises: 0023_entity_scopes

One row per instance of an attribute the time-series store does not keep (LanguageProperty,
JsonProperty, VocabProperty, ListProperty, Relationships, GeoProperties and ``location``, text/boolean/
object Property values) and per deletion of any attribute, written by every ORM write of an entity (see
sensorhub.entities.models). Existing entities get their current non-numeric attributes and location as
their first instance (dated by observedAt, else by the entity's last change), so their history starts
with what is known rather than empty.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from sensorhub.migrations._backfill import batches, epoch_us

revision: str = "0024_attribute_instances"
down_revision: str | None = "0023_entity_scopes"


def upgrade() -> None:
    op.create_table(
        "attribute_instances",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column(
            "entity_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("entities.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attribute", sa.String(length=200), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("instance", sa.JSON(), nullable=True),
        sa.UniqueConstraint("entity_pk", "attribute", "deleted", "ts", name="uq_attribute_instances"),
    )
    _first_instances()


def _first_instances() -> None:
    """Each entity's current non-numeric attributes and location, as their first instance."""
    conn = op.get_bind()
    instances = sa.table(
        "attribute_instances",
        sa.column("entity_pk", sa.BigInteger()),
        sa.column("attribute", sa.String()),
        sa.column("deleted", sa.Boolean()),
        sa.column("ts", sa.BigInteger()),
        sa.column("instance", sa.JSON()),
    )
    entities = sa.table(
        "entities",
        sa.column("pk", sa.BigInteger()),
        sa.column("attrs", sa.JSON()),
        sa.column("location", sa.JSON()),
        sa.column("modified_at", sa.DateTime()),
    )
    query = sa.select(entities.c.pk, entities.c.attrs, entities.c.location, entities.c.modified_at)
    for batch in batches(conn, query, entities.c.pk):
        rows = []
        for pk, attrs, location, modified in batch:
            at = epoch_us(modified)
            current = dict(attrs or {})
            if location is not None:
                current["location"] = {"type": "GeoProperty", "value": location}
            for name, attr in current.items():
                if _is_number(attr):
                    continue  # the time-series store's
                ts = _observed_us(attr.get("observedAt")) if isinstance(attr, dict) else None
                rows.append(
                    {"entity_pk": pk, "attribute": name, "deleted": False, "ts": ts or at, "instance": attr}
                )
        if rows:
            conn.execute(sa.insert(instances), rows)


def _observed_us(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return epoch_us(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError):
        return None


def _is_number(attr: Any) -> bool:
    if not isinstance(attr, dict) or attr.get("type", "Property") != "Property":
        return False
    v = attr.get("value")
    return isinstance(v, int | float) and not isinstance(v, bool)


def downgrade() -> None:
    op.drop_table("attribute_instances")
