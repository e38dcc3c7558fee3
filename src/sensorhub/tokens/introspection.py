"""What a token can do: ``GET /api/tokens/self``, and the grants LEAF's ``GET /api/managements`` lists."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sensorhub.auth.principal import Principal
from sensorhub.auth.scopes import ALL_SCOPES


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def effective_grants(principal: Principal) -> list[dict[str, Any]]:
    """The effective grants (owner's grants ∩ token restrictions), in the shape of LEAF's
    ``/api/managements`` (:mod:`sensorhub.compat.leaf`) and of ``grants`` in ``/api/tokens/self``."""
    out = []
    for r in principal.rules:
        org = principal.orgs.get(r.org_id)
        ws = principal.workspaces.get(r.workspace_id) if r.workspace_id else None
        rid = hashlib.sha256(
            f"{principal.credential_id}|{r.org_id}|{r.workspace_id}|{r.entity_id}|{r.time_start}|{r.time_end}".encode()
        ).hexdigest()[:16]
        out.append(
            {
                "id": rid,
                "organisation": org.name if org else r.org_id,
                "organisation_slug": org.slug if org else None,
                "department": ws.name if ws else None,
                "department_slug": ws.slug if ws else None,
                "entity": r.entity_id,
                "time_start": _iso(r.time_start),
                "time_end": _iso(r.time_end),
                "scopes": sorted(principal.org_scopes.get(r.org_id, ())),
            }
        )
    return out


def describe(principal: Principal, now: datetime) -> dict[str, Any]:
    return {
        "id": principal.credential_id,
        "kind": principal.kind,
        "name": principal.name,
        "owner": {
            "type": "organisation"
            if principal.kind == "key"
            else ("api_user" if principal.is_api_user else "user"),
            "id": principal.key_org_id if principal.kind == "key" else principal.user_id,
            "name": principal.owner_label,
        },
        "scopes": sorted(principal.token_scopes),
        "effective_scopes": sorted(principal.scopes),
        "missing_scopes": sorted(ALL_SCOPES - principal.scopes),
        "organisations": [
            {
                "id": o.id,
                "slug": o.slug,
                "name": o.name,
                "role": o.role,
                "scopes": sorted(principal.org_scopes.get(o.id, ())),
            }
            for o in principal.orgs.values()
        ],
        "grants": effective_grants(principal),
        # Organisations it reaches but may not read now (their token policy), and why.
        "withheld": [{"organisation": w.org_slug, "why": w.why} for w in principal.withheld],
        "restrictions": {r.kind: r.to_json() for r in principal.restrictions},
        "created_at": _iso(principal.created_at),
        "expires_at": _iso(principal.expires_at),
        "expires_in_seconds": int((principal.expires_at - now).total_seconds())
        if principal.expires_at
        else None,
        "expires_soon": principal.expires_soon(now),
        "rotation": {
            # This secret was rotated away: it works until expires_at (the end of its grace period).
            "superseded": principal.superseded,
            # This token was rotated with a grace period: its previous secret still works until then.
            "previous_secret_valid_until": _iso(principal.previous_valid_until)
            if principal.previous_valid_until and principal.previous_valid_until > now
            else None,
        },
        "rate_limit_per_minute": principal.rate_limit_per_minute,
        "export_row_cap": principal.export_row_cap,
    }
