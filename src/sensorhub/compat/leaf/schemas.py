"""LEAF wire shapes: data rows ``{time, entity, metric, value, tags: {unit, organisation, department}}``."""

from __future__ import annotations

from typing import Any

from sensorhub.auth.principal import Principal
from sensorhub.kit.time import iso_array
from sensorhub.timeseries.rows import Rows


def data_rows(rows: Rows, principal: Principal) -> list[dict[str, Any]]:
    """``rows`` as LEAF rows; organisations and departments by the slugs the credential knows."""
    out = []
    times = iso_array(rows.ts).tolist()
    for t, sid, v in zip(times, rows.series_ids.tolist(), rows.values.tolist(), strict=True):
        x = rows.series[sid]
        o = principal.orgs.get(x.org_id)
        w = principal.workspaces.get(x.workspace_id)
        out.append(
            {
                "time": t,
                "entity": x.entity_id,
                "metric": x.attribute,
                "value": v,
                "tags": {
                    "unit": x.unit,
                    "organisation": o.slug if o else x.org_id,
                    "department": w.slug if w else x.workspace_id,
                },
            }
        )
    return out
