"""Auto-provisioning: an ingest write that names an unknown device creates it, where a workspace asks for it.

A workspace's setting (``auto_provision``, off by default; :func:`sensorhub.accounts.service.set_auto_provisioning`)
names the entity type of the devices it creates and which credentials may trigger it (any credential with
``ingest`` on the workspace, or a list of credential ids). Every ingest path (HTTP backfill, gateways, line
protocol, MQTT) goes through :func:`sensorhub.timeseries.ingest.check_target`, which asks :func:`plan` when
the device is not found:

- only a credential whose ``ingest`` access covers the device in that workspace qualifies: its restrictions
  (organisations, workspaces, entities) apply as to any write, so an entity-restricted token only ever
  creates a device of its own list;
- the device reference must be an entity id (a URI such as ``urn:ngsi-ld:Device:sensor-1``): it becomes the
  new entity's id;
- an id that exists anywhere in the organisation is never created again (the token simply cannot see it:
  the refusal stays the plain "not found");
- when several workspaces would qualify, the write is refused with the workspaces to choose from (the
  request names one with ``NGSILD-Tenant`` / ``bucket``).

The entity is created in the write's own transaction (:func:`create`), so a refused write creates nothing,
and the creation is recorded in the audit log (``entity.auto_provision``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Organisation, Workspace
from sensorhub.audit.service import record
from sensorhub.authz.access import Access
from sensorhub.authz.entities import visible_entity
from sensorhub.entities.anchors import ANCHORS
from sensorhub.entities.models import Entity
from sensorhub.entities.normalize import check_entity_id
from sensorhub.errors import BadRequest, Conflict, SensorhubError


@dataclass(frozen=True, slots=True)
class Writer:
    """Who writes (for the workspaces' credential lists and the audit log) and through which path."""

    credential_id: str
    user_id: str | None
    via: str  # "backfill" | "gateway" | "line protocol" | "mqtt" | "graphql"


@dataclass(frozen=True, slots=True)
class Plan:
    """A device to create: its id, where, and of which type."""

    entity_id: str
    org_id: str
    workspace_id: str
    workspace_slug: str
    entity_type: str


class Workspaces:
    """The auto-provisioning workspaces of an access's organisations, looked up once (when the first
    unknown device asks) for all the devices of one pass of a write: one per session, as each pass (the
    read-only check, then the write transaction) reads them afresh."""

    def __init__(self, s: Session, access: Access) -> None:
        self._s, self._access = s, access
        self._rows: list[Workspace] | None = None

    def rows(self) -> list[Workspace]:
        if self._rows is None:
            self._rows = list(
                self._s.scalars(
                    select(Workspace)
                    .where(
                        Workspace.auto_provision.is_(True), Workspace.org_id.in_(sorted(self._access.org_ids))
                    )
                    .order_by(Workspace.org_id, Workspace.slug)
                )
            )
        return self._rows


def plan(
    s: Session, access: Access, writer: Writer, ref: str, workspaces: Workspaces | None = None
) -> Plan | None:
    """Where the unknown device ``ref`` would be created for ``writer``; ``None`` when no workspace
    would (the caller then refuses as before: not found). ``workspaces``: the pass's lookup (made for
    ``s`` and ``access``), shared by its devices."""
    if access.is_empty:
        return None
    candidates = [
        ws
        for ws in (Workspaces(s, access) if workspaces is None else workspaces).rows()
        if access.allows(ws.org_id, ws.id, ref)
        and (ws.auto_provision_credentials is None or writer.credential_id in ws.auto_provision_credentials)
    ]
    if not candidates:
        return None
    check_entity_id(ref, "the device (auto-provisioning creates it with this id)")
    # An id taken anywhere in the organisation is not created again (the credential cannot see it).
    taken = set(
        s.scalars(
            # tenancy: only to refuse creating a duplicate id; nothing of these rows is read or returned
            select(Entity.org_id).where(
                Entity.entity_id == ref, Entity.org_id.in_([w.org_id for w in candidates])
            )
        )
    )
    candidates = [w for w in candidates if w.org_id not in taken]
    if not candidates:
        return None
    if len(candidates) > 1:
        orgs = {
            o.id: o.slug
            for o in s.scalars(
                select(Organisation).where(Organisation.id.in_({w.org_id for w in candidates}))
            )
        }
        names = ", ".join(f"{orgs.get(w.org_id, w.org_id)}/{w.slug}" for w in candidates)
        raise BadRequest(
            f"device '{ref[:80]}' does not exist and auto-provisioning is on in several workspaces this "
            f"credential writes to ({names}): name one (NGSILD-Tenant: <org>/<workspace>, or bucket/db for "
            "line protocol) or restrict the credential to one workspace"
        )
    ws = candidates[0]
    return Plan(ref, ws.org_id, ws.id, ws.slug, ws.auto_provision_type)


def pending_entity(p: Plan) -> Entity:
    """The entity ``p`` would create, not added to any session (for the checks before the write)."""
    return Entity(
        entity_id=p.entity_id, org_id=p.org_id, workspace_id=p.workspace_id, type=p.entity_type, attrs={}
    )


def create(s: Session, access: Access, writer: Writer, p: Plan) -> Entity:
    """Create the planned device in the write's transaction (audited). A concurrent write that created
    it first wins: its entity is returned (or, if this credential cannot see it, a conflict)."""
    e = pending_entity(p)
    try:
        with s.begin_nested():
            s.add(e)
            s.flush()
    except IntegrityError:
        try:
            return visible_entity(s, access, p.entity_id)
        except SensorhubError:
            raise Conflict(
                f"device '{p.entity_id[:80]}' was just created by another write; send again"
            ) from None
    ANCHORS.clear()
    record(
        s,
        "entity.auto_provision",
        org_id=p.org_id,
        actor_user_id=writer.user_id,
        credential_id=writer.credential_id,
        target=p.entity_id,
        details={"workspace": p.workspace_slug, "type": p.entity_type, "via": writer.via},
    )
    return e
