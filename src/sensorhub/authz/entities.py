"""Object-level access to entities: the one lookup every entity-addressed route uses."""

from __future__ import annotations

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Organisation, Workspace
from sensorhub.authz.access import Access
from sensorhub.authz.scope import visible_entities
from sensorhub.entities.models import Entity
from sensorhub.errors import Conflict, NotFound

MAX_CANDIDATES = 20


class AmbiguousEntity(Conflict):
    """The id names entities in several organisations the caller may read (ids are unique per
    organisation only). ETSI defines no ProblemDetails type for this; like ``Unauthorized``, ours."""

    ngsi_type = "Conflict"
    code = "ambiguous_entity"


def visible_entities_query(access: Access) -> Select[Entity]:
    """A SELECT of the entities ``access`` covers (time windows are applied by the data reads)."""
    return select(Entity).where(visible_entities(access).where())


def visible_entity(s: Session, access: Access, ref: str) -> Entity:
    """The entity with NGSI-LD id or asset id ``ref`` that ``access`` covers.

    Raises :class:`NotFound` both when it does not exist and when it belongs to data the caller may
    not see, with the same message, so that no other tenant's entity can be probed for."""
    if not access.is_empty:
        q = (
            visible_entities_query(access)
            .where(or_(Entity.entity_id == ref, Entity.asset_id == ref))
            .limit(MAX_CANDIDATES)
        )
        rows: list[Entity] = list(s.scalars(q))
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            # The same NGSI-LD id in several organisations this token reaches: prefer an exact id match,
            # else say how to choose. Every candidate is readable by this caller, so naming them leaks
            # nothing; organisations it cannot read never appear here.
            exact = [e for e in rows if e.entity_id == ref]
            if len(exact) == 1:
                return exact[0]
            if exact:
                raise AmbiguousEntity(
                    f"entity '{ref}' exists in several organisations you can read: send the header "
                    f"NGSILD-Tenant: <org> (or <org>/<workspace>) with one of "
                    f"{', '.join(_tenants(s, exact))}"
                )
    raise NotFound(f"entity '{ref}' not found")


def _tenants(s: Session, rows: list[Entity]) -> list[str]:
    org_ids = {e.org_id for e in rows}
    ws_ids = {e.workspace_id for e in rows}
    orgs = {
        i: slug
        for i, slug in s.execute(
            select(Organisation.id, Organisation.slug).where(Organisation.id.in_(org_ids))
        )
    }
    wss = {
        i: slug for i, slug in s.execute(select(Workspace.id, Workspace.slug).where(Workspace.id.in_(ws_ids)))
    }
    return sorted(f"{orgs.get(e.org_id, e.org_id)}/{wss.get(e.workspace_id, e.workspace_id)}" for e in rows)
