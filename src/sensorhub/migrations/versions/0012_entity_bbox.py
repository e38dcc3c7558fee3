"""entities: bounding box of the location (the NGSI-LD geo-query prefilter)

Revision ID: 0010_geo
Revises: 0006_series_topic

Filled here for the entities that already have a location; from then on every ORM write of an entity
keeps it (sensorhub.entities.models).
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0010_geo"
down_revision: str | None = "0006_series_topic"

COLUMNS = ("geo_min_lon", "geo_min_lat", "geo_max_lon", "geo_max_lat", "geo_lat_span")


def _bbox(geometry: Any) -> tuple[float, float, float, float] | None:
    xs: list[float] = []
    ys: list[float] = []

    def walk(c: Any) -> None:
        if isinstance(c, list) and len(c) >= 2 and all(isinstance(v, int | float) for v in c):
            xs.append(float(c[0]))
            ys.append(float(c[1]))
        elif isinstance(c, list):
            for v in c:
                walk(v)

    if isinstance(geometry, dict):
        if geometry.get("type") == "GeometryCollection":
            for g in geometry.get("geometries") or []:
                walk(g.get("coordinates") if isinstance(g, dict) else None)
        else:
            walk(geometry.get("coordinates"))
    return (min(xs), min(ys), max(xs), max(ys)) if xs else None


def upgrade() -> None:
    for c in COLUMNS:
        op.add_column("entities", sa.Column(c, sa.Float(), nullable=True))
    op.create_index("ix_entities_geo_lat", "entities", ["geo_min_lat", "geo_min_lon"])
    op.create_index("ix_entities_geo_lat_span", "entities", ["geo_lat_span"])
    entities = sa.table(
        "entities", sa.column("pk"), sa.column("location", sa.JSON()), *(sa.column(c) for c in COLUMNS)
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(entities.c.pk, entities.c.location).where(entities.c.location.is_not(None)))
    updates = []
    for pk, location in rows:
        box = _bbox(location)
        if box is not None:
            updates.append(
                {"k": pk, "a": box[0], "b": box[1], "c": box[2], "d": box[3], "e": box[3] - box[1]}
            )
    if updates:
        bind.execute(
            entities.update()
            .where(entities.c.pk == sa.bindparam("k"))
            .values(
                geo_min_lon=sa.bindparam("a"),
                geo_min_lat=sa.bindparam("b"),
                geo_max_lon=sa.bindparam("c"),
                geo_max_lat=sa.bindparam("d"),
                geo_lat_span=sa.bindparam("e"),
            ),
            updates,
        )


def downgrade() -> None:
    op.drop_index("ix_entities_geo_lat_span", "entities")
    op.drop_index("ix_entities_geo_lat", "entities")
    for c in reversed(COLUMNS):
        op.drop_column("entities", c)
