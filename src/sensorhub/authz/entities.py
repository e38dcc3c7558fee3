"""Object-level access to entities: the one lookup every entity-addressed route uses."""

from __future__ import annotations

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from sensorhub.authz.access import Access
from sensorhub.entities.models import Entity
from sensorhub.errors import NotFound


def visible_entities_query(access: Access) -> Select[Entity]:
    """A SELECT of the entities ``access`` covers (time windows are applied by the data reads)."""
    return select(Entity).where(access.sql_filter(Entity.org_id, Entity.workspace_id, Entity.entity_id))


def visible_entity(s: Session, access: Access, ref: str) -> Entity:
    """The entity with NGSI-LD id or asset id ``ref`` that ``access`` covers.

    Raises :class:`NotFound` both when it does not exist and when it belongs to data the caller may
    not see, with the same message, so that no other tenant's entity can be probed for."""
    if not access.is_empty:
        q = visible_entities_query(access).where(or_(Entity.entity_id == ref, Entity.asset_id == ref)).limit(2)
        rows: list[Entity] = list(s.scalars(q))
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            # The same NGSI-LD id in two organisations this token reaches: prefer an exact id match.
            exact = [e for e in rows if e.entity_id == ref]
            if len(exact) == 1:
                return exact[0]
    raise NotFound(f"entity '{ref}' not found")
