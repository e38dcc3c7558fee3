"""Gateway ingest: one request carries records of many devices, ``[{device, timestamp?, topic?, data}]``.

Each record is an Akenza backfill record plus the ``device`` it belongs to (an entity id or asset id).
Records are grouped by device and each group is checked exactly as a backfill of that device; every
record's problem is reported by its index in the request (``errors: [{index, message}]``), and if any
record is refused, none is stored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from sensorhub.authz.access import Access
from sensorhub.errors import BadRequest, Forbidden, NotFound, SensorhubError
from sensorhub.timeseries import ingest, provisioning
from sensorhub.timeseries.names import check_device_ref

GATEWAY_FIELDS = frozenset({"device", "timestamp", "topic", "data"})
MAX_REPORTED_ERRORS = 100
_LOCAL_RECORD = re.compile(r"^record \d+: ")


@dataclass(frozen=True, slots=True)
class Group:
    """The records of one device: their indexes in the request and the prepared write."""

    device: str
    indexes: list[int]
    prepared: ingest.Prepared


def _device_of(i: int, rec: Any) -> str:
    if type(rec) is not dict:
        raise BadRequest("must be an object {device, timestamp?, topic?, data: {...}}")
    unknown = [k for k in rec if k not in GATEWAY_FIELDS]
    if unknown:
        raise BadRequest(f"unknown field '{unknown[0][:40]}'; a record has device, timestamp, topic and data")
    device = rec.get("device")
    if not isinstance(device, str):
        raise BadRequest("device must be a string: the entity id or asset id the record belongs to")
    return check_device_ref(device, "device")


def _message(e: SensorhubError) -> str:
    return _LOCAL_RECORD.sub("", e.message)


class Refused(BadRequest):
    """Some records are refused; ``item_errors`` lists each by index (rendered as ``errors``)."""

    def __init__(self, message: str, item_errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.item_errors = item_errors


def refused(
    errors: list[dict[str, Any]], total: int, status: int = 400, error: str = "Bad Request"
) -> BadRequest:
    """The refusal of a gateway request; ``status`` 404 (403) when every refused record's device is
    not visible (not writable), as for a backfill of that device."""
    shown = errors[:MAX_REPORTED_ERRORS]
    more = f" (the first {MAX_REPORTED_ERRORS} are listed)" if len(errors) > len(shown) else ""
    first = shown[0]
    out = Refused(
        f"{len(errors)} of {total} records refused, nothing stored{more}; record {first['index']}: "
        f"{first['message']}",
        shown,
    )
    out.status, out.error = status, error
    return out


def prepare(raw: bytes, now: datetime, limits: ingest.Limits) -> list[Group]:
    """Parse and check a gateway body without touching the database; :class:`BadRequest` listing every
    refused record by index (nothing of the request is kept)."""
    limits.check_body(len(raw))
    records = ingest.parse_body(raw, limits.max_records)
    if raw.lstrip()[:1] != b"[":
        raise BadRequest("the body must be a list of records [{device, timestamp?, topic?, data}]")
    errors: list[dict[str, Any]] = []
    by_device: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        try:
            by_device.setdefault(_device_of(i, rec), []).append(i)
        except BadRequest as e:
            errors.append({"index": i, "message": _message(e)})
    groups: list[Group] = []
    for device, indexes in by_device.items():
        body = [{k: v for k, v in records[i].items() if k != "device"} for i in indexes]
        try:
            p = ingest.validate(body, now, limits.max_attributes)
            ingest.check_prepared(p, limits)
        except SensorhubError as e:
            errors.extend(_each_record_errors(body, indexes, now, limits, e))
            continue
        groups.append(Group(device, indexes, p))
    if errors:
        errors.sort(key=lambda x: int(x["index"]))
        raise refused(errors, len(records))
    return groups


def _each_record_errors(
    body: Sequence[Any], indexes: list[int], now: datetime, limits: ingest.Limits, group_error: SensorhubError
) -> list[dict[str, Any]]:
    """The problem of each record of a refused group (checked one by one, only on this error path);
    the group's own error when no single record has one (e.g. too many attributes together)."""
    out: list[dict[str, Any]] = []
    for rec, i in zip(body, indexes, strict=True):
        try:
            ingest.validate([rec], now, limits.max_attributes)
        except SensorhubError as e:
            out.append({"index": i, "message": _message(e)})
    if not out:
        if not isinstance(group_error, BadRequest):
            raise group_error  # a limit of the request as a whole (413)
        out.append({"index": indexes[0], "message": _message(group_error)})
    return out


def check_targets(
    s: Session,
    access: Access,
    groups: Sequence[Group],
    limits: ingest.Limits,
    writer: provisioning.Writer | None = None,
) -> None:
    """What the database decides (the device is visible and writable in the points' windows, units,
    new series), for every device; a refused device refuses each of its records, by index."""
    errors: list[dict[str, Any]] = []
    kinds: set[type[SensorhubError]] = set()
    total = 0
    workspaces = provisioning.Workspaces(s, access)
    for g in groups:
        total += len(g.indexes)
        try:
            ingest.check_target(s, access, g.device, g.prepared, limits, writer, workspaces=workspaces)
        except (BadRequest, NotFound, Forbidden) as e:
            kinds.add(
                NotFound if isinstance(e, NotFound) else Forbidden if isinstance(e, Forbidden) else BadRequest
            )
            errors.extend({"index": i, "message": f"device '{g.device}': {_message(e)}"} for i in g.indexes)
    if errors:
        errors.sort(key=lambda x: int(x["index"]))
        only = kinds.pop() if len(kinds) == 1 else BadRequest
        raise refused(errors, total, only.status, only.error)


def batches(groups: Sequence[Group]) -> list[ingest.DeviceBatch]:
    return [ingest.DeviceBatch(g.device, f"record {g.indexes[0]}", g.prepared) for g in groups]
