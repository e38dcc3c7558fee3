"""Time windows on entity attributes: what a time-limited credential may see of an entity's latest state.

A grant, PAT, API key or API user limited to ``[time_start, time_end)`` reads measurements only inside
that window (:meth:`~sensorhub.authz.access.Access.clamp`). An entity attribute that carries an
``observedAt`` is an observation too (ingest keeps the latest reading there), so it is visible only when
its ``observedAt`` lies in one of the windows the access allows *for that entity*; otherwise rendering
omits it and ``q``/``attrs`` treat it as absent. Attributes without ``observedAt`` (static properties,
relationships) are not time-bound.

The check exists twice and must agree: in Python for rendering (:func:`visible_attrs`) and in SQL for
``q`` (:func:`visible_sql`). Both read ``observedAt`` through one strict ISO 8601 form
(:data:`OBSERVED_AT_FORM`, microsecond precision); a value outside that form is treated as outside every
bounded window (fail closed) — everything sensorhub itself writes is in that form.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, cast, false, func, or_
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.sql.elements import ColumnElement

from sensorhub.authz.access import Access, Window
from sensorhub.kit.time import OBSERVED_AT_FORM, observed_us

_HAS_OFFSET = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(dt: datetime) -> int:
    d = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)) - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def is_bounded(access: Access) -> bool:
    """Whether any rule of ``access`` limits time (only then can an attribute be hidden)."""
    return any(r.time_start is not None or r.time_end is not None for r in access.rules)


def _unbounded(windows: Sequence[Window]) -> bool:
    return len(windows) == 1 and windows[0] == (None, None)


def attr_visible(attr: Any, windows: Sequence[Window]) -> bool:
    at = attr.get("observedAt") if isinstance(attr, dict) else None
    if at is None:
        return True
    ts = observed_us(at)
    if ts is None:
        return False
    return any((a is None or ts >= _us(a)) and (b is None or ts < _us(b)) for a, b in windows)


def visible_attrs(attrs: dict[str, Any], windows: Sequence[Window]) -> dict[str, Any]:
    """``attrs`` without the observations that lie outside ``windows`` (the entity's readable windows)."""
    if _unbounded(windows):
        return attrs
    return {name: a for name, a in attrs.items() if attr_visible(a, windows)}


def visible_sql(
    access: Access, org_col: Any, workspace_col: Any, entity_col: Any, attrs_col: Any, dialect: str
) -> Callable[[str], ColumnElement[bool]] | None:
    """For a time-bounded ``access``: a function giving, per attribute name, the SQL condition "this row's
    attribute is visible" (no ``observedAt``, or one inside a window of a rule that covers the row).
    ``None`` when nothing is time-bound (no condition needed)."""
    if not is_bounded(access):
        return None
    pg = dialect == "postgresql"

    def visible(name: str) -> ColumnElement[bool]:
        if pg:
            obs: Any = func.json_extract_path_text(attrs_col, name, "observedAt")
        else:
            obs = func.json_extract(attrs_col, "$" + f'."{name}"' + '."observedAt"')
        return _visible_obs(access, org_col, workspace_col, entity_col, obs, pg)

    return visible


def visible_instance(
    access: Access, org_col: Any, workspace_col: Any, entity_col: Any, dialect: str
) -> Callable[[Any], ColumnElement[bool]] | None:
    """As :func:`visible_sql`, for one attribute instance (a JSON object column, e.g. an element of
    ``entities.datasets``): the condition "this instance is visible"."""
    if not is_bounded(access):
        return None
    pg = dialect == "postgresql"

    def visible(instance: Any) -> ColumnElement[bool]:
        if pg:
            obs: Any = func.json_extract_path_text(instance, "observedAt")
        else:
            obs = func.json_extract(instance, '$."observedAt"')
        return _visible_obs(access, org_col, workspace_col, entity_col, obs, pg)

    return visible


def _visible_obs(
    access: Access, org_col: Any, workspace_col: Any, entity_col: Any, obs: Any, pg: bool
) -> ColumnElement[bool]:
    """``obs`` (an observedAt, NULL if none) is absent or inside a window of a rule covering the row."""
    if pg:
        # Cast only what has the strict form (CASE keeps PostgreSQL from casting anything else); a
        # time without offset is UTC, as everywhere in sensorhub.
        ts: Any = case(
            (
                obs.regexp_match(OBSERVED_AT_FORM),
                case(
                    (obs.regexp_match(_HAS_OFFSET), cast(obs, TIMESTAMP(timezone=True))),
                    else_=func.timezone("UTC", cast(obs, TIMESTAMP(timezone=False))),
                ),
            ),
            else_=None,
        )
    else:
        ts = func.sensorhub_observed_us(obs)
    allowed: list[ColumnElement[bool]] = []
    for r in access.rules:
        parts: list[ColumnElement[bool]] = [org_col == r.org_id]
        if r.workspace_id is not None:
            parts.append(workspace_col == r.workspace_id)
        if r.entity_id is not None:
            parts.append(entity_col == r.entity_id)
        for bound, op in ((r.time_start, "ge"), (r.time_end, "lt")):
            if bound is None:
                continue
            value: Any = bound if pg else _us(bound)
            parts.append(func.coalesce(ts >= value if op == "ge" else ts < value, false()))
        allowed.append(and_(*parts))
    return or_(obs.is_(None), *allowed)
