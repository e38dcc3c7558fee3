"""What organisations decide about the credentials that read them — applied where a credential's access
is computed (:func:`sensorhub.auth.resolve.build_principal`), so every route family follows it at once:

- **approval** (``require_pat_approval``): a member's PAT reads the organisation only once an owner or
  admin approved it; until then (``pending``) or after a denial it does not;
- **revocation for one organisation** (from the inventory): that organisation drops out of the PAT;
- **allowed scopes** for members' PATs (``allowed_pat_scopes``);
- **an IP allowlist** for every credential of the organisation (``allowed_ips``): checked per request
  (:func:`narrow_to_client`), as the client address is not known when the credential is resolved.

Organisation API keys and API users' tokens are made by the organisation's admins: they need no
approval and follow no PAT scope list, but the IP allowlist applies to them too. Owners' and admins'
own PATs need no approval either.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Organisation, Role
from sensorhub.auth.principal import Principal, Withheld
from sensorhub.auth.restrictions import IPNetwork, parse_networks
from sensorhub.tokens.models import CredentialOrgAccess, OrgAccessState


def _why(state: str | None, reason: str | None) -> str:
    if state == OrgAccessState.denied:
        return "its admins denied this token" + (f": {reason}" if reason else "")
    if state == OrgAccessState.revoked:
        return "its admins revoked this token for the organisation"
    return "this token awaits approval by its owners or admins"


def admitted_scopes(
    s: Session,
    credential_id: str,
    person_pat: bool,
    org_scopes: dict[str, frozenset[str]],
    roles: dict[str, str | None],
) -> tuple[dict[str, frozenset[str]], list[Withheld]]:
    """``org_scopes`` (organisation → effective scopes) after each organisation's PAT decisions and
    scope policy; the organisations withheld, with why."""
    if not org_scopes:
        return org_scopes, []
    orgs = {o.id: o for o in s.scalars(select(Organisation).where(Organisation.id.in_(list(org_scopes))))}
    decisions = (
        {
            d.org_id: d
            for d in s.scalars(
                select(CredentialOrgAccess).where(CredentialOrgAccess.credential_id == credential_id)
            )
        }
        if person_pat
        else {}
    )
    out: dict[str, frozenset[str]] = {}
    withheld: list[Withheld] = []
    for org_id, scopes in org_scopes.items():
        org = orgs.get(org_id)
        d = decisions.get(org_id)
        state = d.state if d else None
        if org is None:
            continue
        if person_pat and not _admitted(org, state, roles.get(org_id)):
            withheld.append(Withheld(org.slug, _why(state, d.reason if d else None)))
            continue
        if person_pat and org.allowed_pat_scopes is not None and not _is_admin(roles.get(org_id)):
            scopes = scopes & frozenset(org.allowed_pat_scopes)
        out[org_id] = scopes
    return out, withheld


def _is_admin(role: str | None) -> bool:
    return role is not None and Role(role).is_admin


def _admitted(org: Organisation, state: str | None, role: str | None) -> bool:
    if state in (OrgAccessState.denied, OrgAccessState.revoked):
        return False
    if org.require_pat_approval and not _is_admin(role):
        return state == OrgAccessState.approved
    return True


def org_networks(s: Session, org_ids: Iterable[str]) -> dict[str, tuple[IPNetwork, ...]]:
    """The IP allowlists of those organisations that have one."""
    ids = list(org_ids)
    if not ids:
        return {}
    q = select(Organisation.id, Organisation.allowed_ips).where(Organisation.id.in_(ids))
    return {oid: parse_networks(ips) for oid, ips in s.execute(q).tuples() if ips}


def narrow_to_client(principal: Principal, client_ip: str) -> Principal:
    """``principal`` without the organisations whose IP allowlist ``client_ip`` is outside of (the same
    principal when none has one, which costs nothing)."""
    if not principal.org_networks:
        return principal
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        ip = None
    blocked = {
        org_id
        for org_id, nets in principal.org_networks.items()
        if ip is None or not any(ip in n for n in nets)
    }
    if not blocked:
        return principal
    withheld = tuple(principal.withheld) + tuple(
        Withheld(
            principal.orgs[o].slug if o in principal.orgs else o,
            "this client address is not in its IP allowlist",
        )
        for o in blocked
    )
    return replace(
        principal,
        org_scopes={o: sc for o, sc in principal.org_scopes.items() if o not in blocked},
        rules=tuple(r for r in principal.rules if r.org_id not in blocked),
        orgs={o: ref for o, ref in principal.orgs.items() if o not in blocked},
        workspaces={w: ref for w, ref in principal.workspaces.items() if ref.org_id not in blocked},
        withheld=withheld,
        org_networks={},
        _access_cache={},
    )
