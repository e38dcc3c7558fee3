"""Akenza wire shapes: entities as assets, and Spring Data pages."""

from __future__ import annotations

import math
from typing import Any

from sensorhub.entities.models import Entity


def asset_json(e: Entity, attrs: dict[str, Any]) -> dict[str, Any]:
    """``e`` as an Akenza asset whose ``properties`` are ``attrs`` (what the reader may see)."""
    desc = attrs.get("description", {}).get("value")
    return {
        "id": e.asset_id,
        "name": e.name or e.entity_id,
        "description": desc if isinstance(desc, str) else None,
        "type": e.type,
        "entityId": e.entity_id,
        "workspaceId": e.workspace_id,
        "organizationId": e.org_id,
        "created": e.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "updated": e.modified_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "properties": {
            k: (a.get("object") if a.get("type") == "Relationship" else a.get("value"))
            for k, a in attrs.items()
        },
        "location": e.location,
    }


def spring_page(content: list[dict[str, Any]], page: int, size: int, total: int) -> dict[str, Any]:
    sort = {"sorted": False, "unsorted": True, "empty": True}
    pages = math.ceil(total / size) if size else 0
    return {
        "content": content,
        "pageable": {
            "pageNumber": page,
            "pageSize": size,
            "offset": page * size,
            "paged": True,
            "unpaged": False,
            "sort": sort,
        },
        "totalPages": pages,
        "totalElements": total,
        "last": page >= pages - 1,
        "number": page,
        "size": size,
        "numberOfElements": len(content),
        "first": page == 0,
        "sort": sort,
        "empty": not content,
    }
