"""Exports: a request is resolved against the caller's access (the same rules as reads), streamed from
the time-series store through the wide pivot into a file (or an inline CSV response), and recorded.

Services take sessions or the :class:`~sensorhub.db.Database` and run in worker threads; endpoints
stay thin. An export is a job, not part of a request's transaction: it reads in its own sessions and
records its row in short transactions of its own (``Database.transaction``), because the file is written,
or the CSV streamed, after the request's session has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from anyio import to_thread
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sensorhub import metrics
from sensorhub.audit import service as audit
from sensorhub.auth.principal import Principal
from sensorhub.auth.resolve import Rejected, build_principal
from sensorhub.authz.access import Access, Window
from sensorhub.authz.entities import visible_entity
from sensorhub.config import Settings
from sensorhub.db import Database, utcnow
from sensorhub.entities.models import Entity
from sensorhub.errors import BadRequest, Forbidden, Gone, NotAcceptable, NotFound, SensorhubError
from sensorhub.export import signing
from sensorhub.export.models import Export, ExportStatus
from sensorhub.export.pivot import WidePivot, wide_schema
from sensorhub.export.schemas import Bucketing, ExportOut, ExportRequest, recorded_bucketing
from sensorhub.export.stores import ExportStore, LocalStore, S3Store, StoredFile
from sensorhub.export.writers import (
    CONTENT_TYPES,
    EXTENSIONS,
    FORMATS,
    BackgroundWriter,
    csv_chunks,
    open_writer,
)
from sensorhub.kit.time import parse_time
from sensorhub.timeseries.models import Series
from sensorhub.timeseries.repository import series_by_attribute
from sensorhub.timeseries.service import iter_bucket_batches, iter_raw_batches
from sensorhub.tokens.models import Credential

log = logging.getLogger("sensorhub.export")

CLEANUP_INTERVAL_SECONDS = 300.0

MAX_SERIES = 500
# Inline CSV: rows kept in memory from the counting pass so that small exports are read only once.
INLINE_PREFETCH_ROWS = 100_000
# Cells (rows × series) per batch read from the store: bounds the pivot's memory for wide exports.
BATCH_CELLS = 1 << 23
# Key of ``Export.request`` holding :meth:`ExportPlan.access_record`.
ACCESS_KEY = "access"
# Lifetime of the presigned S3 URL a checked download is redirected to: long enough to start the
# transfer, short enough that a URL leaked after a revocation is useless (S3 cannot revoke it).
S3_REDIRECT_SECONDS = 60


@dataclass(frozen=True)
class ExportColumn:
    name: str  # <entity_id>.<attribute>
    entity_id: str
    attribute: str
    unit: str | None
    series_id: int
    windows: tuple[Window, ...]  # readable parts of [start, end) for this series


@dataclass(frozen=True)
class ExportPlan:
    """A request resolved and authorised: everything needed to produce the rows."""

    fmt: str
    start: datetime
    end: datetime
    columns: tuple[ExportColumn, ...]
    bucketing: Bucketing
    row_cap: int

    @property
    def bucket_seconds(self) -> int | None:
        return self.bucketing.seconds

    @property
    def series_ids(self) -> list[int]:
        return [c.series_id for c in self.columns]

    @property
    def names(self) -> list[str]:
        return ["timestamp", *(c.name for c in self.columns)]

    def summary(self) -> dict[str, object]:
        return {
            "start_time": _iso(self.start),
            "end_time": _iso(self.end),
            "bucket": self.bucketing.bucket,
            "aggregation": self.bucketing.aggregation,
            "series": [{"entity_id": c.entity_id, "attribute": c.attribute} for c in self.columns],
            "units": {c.name: c.unit for c in self.columns},
        }

    def access_record(self) -> list[dict[str, object]]:
        """What the export read, per series: kept with the export (not in the file) so that a download
        can check that the credential may still read exactly that (see :func:`check_download_access`)."""
        return [
            {
                "series_id": c.series_id,
                "name": c.name,
                "windows": [[_iso_or_none(a), _iso_or_none(b)] for a, b in c.windows],
            }
            for c in self.columns
        ]

    def schema(self) -> pa.Schema:
        field_md = []
        for c in self.columns:
            md = {"entity_id": c.entity_id, "attribute": c.attribute}
            if c.unit:
                md["unit"] = c.unit
            field_md.append(md)
        return wide_schema(
            [c.name for c in self.columns],
            field_md,
            {"sensorhub.export": json.dumps(self.summary(), separators=(",", ":"))},
        )

    def filename(self) -> str:
        stamp = "%Y%m%dT%H%M%SZ"
        return (
            f"sensorhub-export-{self.start.strftime(stamp)}-{self.end.strftime(stamp)}.{EXTENSIONS[self.fmt]}"
        )


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def _iso_or_none(dt: datetime | None) -> str | None:
    return None if dt is None else _iso(dt)


# --- planning -----------------------------------------------------------------------------------------


def resolve_format(requested: str | None, inline_csv: bool) -> str:
    fmt = (requested or ("csv" if inline_csv else "")).strip().lower()
    if not fmt:
        raise BadRequest("format is required: 'csv' or 'parquet'")
    if fmt not in FORMATS:
        raise BadRequest(f"unknown format '{requested}': use 'csv' or 'parquet'")
    if inline_csv and fmt != "csv":
        raise NotAcceptable(
            "Accept: text/csv streams CSV inline; ask for format 'csv', or drop the Accept header to get a "
            f"{fmt} file through a download URL"
        )
    return fmt


def plan_export(
    s: Session, principal: Principal, body: ExportRequest, *, inline_csv: bool = False
) -> ExportPlan:
    """Validate the request and resolve every series against the caller's ``export`` access.

    A series whose entity the caller may not read is reported exactly like one that does not exist."""
    fmt = resolve_format(body.format, inline_csv)
    start = parse_time(body.start_time, "start_time")
    end = parse_time(body.end_time, "end_time")
    if end <= start:
        raise BadRequest(f"end_time ({body.end_time}) must be after start_time ({body.start_time})")
    bucketing = body.bucketing()
    if not body.series:
        raise BadRequest("series is empty: list at least one {entity_id, attribute}")
    if len(body.series) > MAX_SERIES:
        raise BadRequest(f"at most {MAX_SERIES} series per export (got {len(body.series)})")
    access = principal.access("export")
    columns: list[ExportColumn] = []
    seen: set[int] = set()
    for ref in body.series:
        entity = visible_entity(s, access, ref.entity_id)
        series = series_by_attribute(s, entity.pk, ref.attribute)
        if series is None:
            raise NotFound(f"entity '{ref.entity_id}' has no series '{ref.attribute}'")
        if series.id in seen:
            raise BadRequest(f"series '{entity.entity_id}.{ref.attribute}' is listed twice")
        seen.add(series.id)
        windows = access.clamp(entity.org_id, entity.workspace_id, entity.entity_id, start, end)
        columns.append(
            ExportColumn(
                name=f"{entity.entity_id}.{series.attribute}",
                entity_id=entity.entity_id,
                attribute=series.attribute,
                unit=series.unit,
                series_id=series.id,
                windows=tuple(windows),
            )
        )
    return ExportPlan(fmt, start, end, tuple(columns), bucketing, principal.export_row_cap)


def read_batches(s: Session, plan: ExportPlan) -> Iterator[pa.RecordBatch]:
    """Long ``(ts, series_id, value)`` batches of the plan's series, inside their windows only."""
    windows = {c.series_id: list(c.windows) for c in plan.columns}
    batch_rows = max(4096, min(65536, BATCH_CELLS // max(1, len(plan.columns))))
    if plan.bucket_seconds is None:
        return iter_raw_batches(s, plan.series_ids, windows, plan.start, plan.end, batch_rows=batch_rows)
    return iter_bucket_batches(
        s,
        plan.series_ids,
        windows,
        plan.start,
        plan.end,
        plan.bucket_seconds,
        aggregation=plan.bucketing.aggregation or "avg",
        batch_rows=batch_rows,
    )


def wide_rows(s: Session, plan: ExportPlan, row_cap: int | None = None) -> WidePivot:
    cap = plan.row_cap if row_cap is None else row_cap
    return WidePivot(read_batches(s, plan), plan.series_ids, plan.schema(), cap)


# --- file exports -------------------------------------------------------------------------------------


def _stored(e: Export) -> StoredFile:
    return StoredFile(e.id, e.object_key, e.filename, CONTENT_TYPES[e.format], e.expires_at)


def create_file_export(
    db: Database,
    store: ExportStore,
    principal: Principal,
    body: ExportRequest,
    *,
    ttl_seconds: int,
    base_url: str,
    ip: str | None = None,
) -> ExportOut:
    """Plan, write and publish an export file; the row is recorded as running, then ready or failed.
    Nothing is written when the request is refused.

    Reads and writes use separate transactions: the long scan is a plain read (it never blocks ingest on
    SQLite), and the two small metadata writes take the write lock up front."""
    t0 = time.perf_counter()
    with db.session() as s:
        plan = plan_export(s, principal, body)
    now = utcnow()
    with db.transaction() as w:
        e = Export(
            credential_id=principal.credential_id,
            format=plan.fmt,
            status=ExportStatus.RUNNING,
            row_cap=plan.row_cap,
            columns=plan.names,
            request={**plan.summary(), ACCESS_KEY: plan.access_record()},
            store=store.kind,
            filename=plan.filename(),
            object_key="",
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
        w.add(e)
        w.flush()
        e.object_key = f"{e.id}.{EXTENSIONS[plan.fmt]}"
    staging = store.staging_path(e.object_key)
    try:
        # The long scan reads committed data only: the read replica serves it when one is configured.
        with db.read_session() as s:
            pivot = wide_rows(s, plan)
            writer = BackgroundWriter(
                open_writer(plan.fmt, staging, plan.schema(), seconds=plan.bucket_seconds is not None)
            )
            try:
                for batch in pivot:
                    writer.write(batch)
            finally:
                writer.close()
        size = store.publish(staging, _stored(e))
    except Exception as exc:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        log.exception("export %s failed", e.id)
        _update(
            db,
            e.id,
            status=ExportStatus.FAILED,
            error=f"{type(exc).__name__}: the export could not be written",
            duration_ms=int((time.perf_counter() - t0) * 1000),
        )
        if isinstance(exc, SensorhubError):
            raise
        raise SensorhubError(
            f"The export could not be written (id {e.id}); it is listed as failed in GET /api/datahub/exports"
        ) from exc
    done = _update(
        db,
        e.id,
        status=ExportStatus.READY,
        rows=pivot.rows,
        truncated=pivot.truncated,
        size_bytes=size,
        duration_ms=int((time.perf_counter() - t0) * 1000),
        audit_event=dict(
            credential_id=principal.credential_id,
            ip=ip,
            details={
                "format": plan.fmt,
                "rows": pivot.rows,
                "truncated": pivot.truncated,
                "columns": len(plan.columns),
            },
        ),
    )
    metrics.export_rows.inc(pivot.rows)
    return export_out(done, store, base_url, utcnow())


def _update(
    db: Database, export_id: str, *, audit_event: dict[str, Any] | None = None, **fields: Any
) -> Export:
    """Set fields of an export row in a short write transaction (plus an audit event)."""
    with db.transaction() as w:
        e = w.get(Export, export_id)
        assert e is not None
        for k, v in fields.items():
            setattr(e, k, v)
        if audit_event is not None:
            audit.record(w, "export.created", target=export_id, **audit_event)
    return e


def status_of(e: Export, now: datetime) -> str:
    if e.status == ExportStatus.READY and (e.deleted_at is not None or e.expires_at <= now):
        return ExportStatus.EXPIRED
    return e.status


def export_out(e: Export, store: ExportStore, base_url: str, now: datetime) -> ExportOut:
    status = status_of(e, now)
    req = e.request or {}
    units = req.get("units") or {}
    bucket, aggregation = recorded_bucketing(req)
    return ExportOut(
        id=e.id,
        status=status,
        format=e.format,
        download_url=store.download_url(_stored(e), base_url, now) if status == ExportStatus.READY else None,
        expires_in=max(0, int((e.expires_at - now).total_seconds())),
        expires_at=e.expires_at,
        created_at=e.created_at,
        rows=e.rows,
        truncated=e.truncated,
        row_cap=e.row_cap,
        columns=list(e.columns),
        units={c: units.get(c) for c in e.columns[1:]},
        start_time=req.get("start_time"),
        end_time=req.get("end_time"),
        bucket=bucket,
        aggregation=aggregation,
        filename=e.filename,
        size_bytes=e.size_bytes,
        error=e.error,
    )


def list_exports(
    db: Database, store: ExportStore, credential_id: str, base_url: str, limit: int = 50
) -> list[ExportOut]:
    """The credential's most recent exports, newest first."""
    with db.session() as s:
        rows = s.scalars(
            select(Export)
            .where(Export.credential_id == credential_id)
            .order_by(Export.created_at.desc(), Export.id)
            .limit(limit)
        ).all()
    now = utcnow()
    return [export_out(e, store, base_url, now) for e in rows]


# --- downloads ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """A checked download: a local file to send, or (S3) a short-lived presigned URL to redirect to."""

    filename: str
    content_type: str
    path: Path | None = None
    redirect_url: str | None = None


def resolve_download(
    db: Database,
    store: ExportStore,
    settings: Settings,
    export_id: str,
    expires: str | None,
    signature: str | None,
    *,
    method: str = "GET",
) -> Download:
    """Check a signed link (a wrong signature → 403, a past expiry → 410), then that the credential
    which made the export may still read what it holds (→ 403), then find the file."""
    if not expires or not signature:
        raise Forbidden("This download link is incomplete: it needs its 'expires' and 'signature' parameters")
    try:
        expires_at = int(expires)
    except ValueError:
        raise Forbidden("This download link is invalid: 'expires' is not a Unix time") from None
    if not signing.verify(settings.resolved_secret_key, export_id, expires_at, signature):
        raise Forbidden(
            "This download link is invalid: its signature does not match. Use the download_url exactly as "
            "returned by POST /api/datahub/export or GET /api/datahub/exports"
        )
    now = utcnow()
    if now.timestamp() >= expires_at:
        raise Gone(
            f"This download link expired at {_iso(datetime.fromtimestamp(expires_at, now.tzinfo))}; "
            "export again with POST /api/datahub/export"
        )
    with db.session() as s:
        e = s.get(Export, export_id)
        if e is None or e.status != ExportStatus.READY:
            raise NotFound(f"export '{export_id}' not found")
        if e.deleted_at is not None or e.expires_at <= now:
            raise Gone("This export has expired and its file was deleted; export again")
        check_download_access(s, e, settings, now)
    content_type = CONTENT_TYPES[e.format]
    if isinstance(store, S3Store):
        url = store.presigned_url(_stored(e), S3_REDIRECT_SECONDS, method=method)
        return Download(e.filename, content_type, redirect_url=url)
    if not isinstance(store, LocalStore):
        raise NotFound("exports are served by the configured object store, not by this server")
    path = store.path(e.object_key)
    if not path.is_file():
        raise Gone("This export's file is no longer available; export again")
    return Download(e.filename, content_type, path=path)


_NO_LONGER = "This download link no longer works: "
_EXPORT_AGAIN = "; export again with a token that may read the data"


def check_download_access(s: Session, e: Export, settings: Settings, now: datetime) -> None:
    """The signature proves the link was issued; this proves it may still be used. The credential that
    made the export must be active (not revoked, not expired, its owner not disabled), still hold the
    ``export`` scope, and still be able to read every series in every time window the file holds —
    checked against the credential's *current* access, as a new export would be. Raises ``Forbidden``
    naming what changed.

    Security trade-off: the check runs on every request to the link (a remote Parquet reader sends
    several), costing a few indexed queries; a revocation, demotion or removed grant therefore bites on
    the next request, like it does for the token itself. The token's IP allowlist is not applied: the
    link is meant to be handed to another program (a notebook, DuckDB, a BI tool) that may fetch it
    from elsewhere."""
    principal = _active_principal(s, e, settings, now)
    access = principal.access("export")
    lost = _NO_LONGER + "the token that created this export may no longer read {}" + _EXPORT_AGAIN
    if access.is_empty:
        raise Forbidden(lost.format("any data with the 'export' scope"))
    req = e.request or {}
    record = req.get(ACCESS_KEY)
    if record is None:  # exports made before the access record existed: entity visibility only
        _check_entities_visible(s, access, req.get("series") or [], lost)
        return
    _check_record_covered(s, access, req, record, lost)


def _active_principal(s: Session, e: Export, settings: Settings, now: datetime) -> Principal:
    """The principal of the credential that made ``e``, or ``Forbidden`` naming why it is gone."""
    cred = s.get(Credential, e.credential_id) if e.credential_id else None
    if cred is None:
        raise Forbidden(_NO_LONGER + "the token that created this export was deleted" + _EXPORT_AGAIN)
    if cred.revoked_at is not None:
        raise Forbidden(_NO_LONGER + "the token that created this export was revoked" + _EXPORT_AGAIN)
    if cred.expires_at is not None and cred.expires_at <= now:
        raise Forbidden(_NO_LONGER + "the token that created this export has expired" + _EXPORT_AGAIN)
    try:
        return build_principal(s, cred, settings, now)
    except Rejected:
        raise Forbidden(
            _NO_LONGER + "the owner of the token that created this export is disabled" + _EXPORT_AGAIN
        ) from None


def _check_entities_visible(s: Session, access: Access, series: list[dict[str, Any]], lost: str) -> None:
    """Every entity an export without an access record listed is still visible to ``access``."""
    for ref in series:
        try:
            visible_entity(s, access, str(ref.get("entity_id")))
        except NotFound:
            raise Forbidden(lost.format(f"'{ref.get('entity_id')}'")) from None


def _check_record_covered(
    s: Session, access: Access, req: dict[str, Any], record: list[dict[str, Any]], lost: str
) -> None:
    """Every series of the access record still exists and is still readable in the windows exported."""
    start = _parse_iso(req.get("start_time"))
    end = _parse_iso(req.get("end_time"))
    for item in record:
        series = s.get(Series, int(item["series_id"]))
        entity = s.get(Entity, series.entity_pk) if series is not None else None
        if entity is None:
            raise Gone(f"This download link no longer works: the series '{item['name']}' was deleted")
        if not _still_covered(access, entity, start, end, item["windows"]):
            raise Forbidden(lost.format(f"'{item['name']}' in the exported time range"))


def _parse_iso(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _still_covered(
    access: Access,
    entity: Entity,
    start: datetime | None,
    end: datetime | None,
    windows: list[list[str | None]],
) -> bool:
    """Whether every window the export read lies inside one window the access allows now."""
    if not access.allows(entity.org_id, entity.workspace_id, entity.entity_id):
        return False
    now_windows = access.clamp(entity.org_id, entity.workspace_id, entity.entity_id, start, end)
    for lo_s, hi_s in windows:
        lo, hi = _parse_iso(lo_s), _parse_iso(hi_s)
        if not any(_within(lo, hi, a, b) for a, b in now_windows):
            return False
    return True


def _within(lo: datetime | None, hi: datetime | None, a: datetime | None, b: datetime | None) -> bool:
    starts_ok = a is None or (lo is not None and a <= lo)
    ends_ok = b is None or (hi is not None and hi <= b)
    return starts_ok and ends_ok


# --- inline CSV -----------------------------------------------------------------------------------------


@dataclass
class InlineCsv:
    rows: int
    truncated: bool
    row_cap: int
    filename: str
    body: Iterator[bytes]


def stream_csv(db: Database, principal: Principal, body: ExportRequest) -> InlineCsv:
    """CSV streamed in the response, no file. A first pass counts the rows (up to the cap) so that the
    headers say exactly how many rows follow and whether the cap cut them; small exports are kept from
    that pass, larger ones are read again while streaming."""
    with db.session() as s:
        plan = plan_export(s, principal, body, inline_csv=True)
        pivot = wide_rows(s, plan)
        kept: list[pa.RecordBatch] | None = []
        kept_rows = 0
        for batch in pivot:
            if kept is not None:
                kept.append(batch)
                kept_rows += batch.num_rows
                if kept_rows > INLINE_PREFETCH_ROWS:
                    kept = None
        rows, truncated = pivot.rows, pivot.truncated
    seconds = plan.bucket_seconds is not None
    schema = plan.schema()
    if kept is not None:
        chunks = csv_chunks(iter(kept), schema, seconds=seconds)
    else:
        chunks = _second_pass(db, plan, rows, seconds)
    return InlineCsv(rows, truncated, plan.row_cap, plan.filename(), chunks)


def _second_pass(db: Database, plan: ExportPlan, rows: int, seconds: bool) -> Iterator[bytes]:
    with db.session() as s:
        yield from csv_chunks(wide_rows(s, plan, row_cap=rows), plan.schema(), seconds=seconds)


# --- cleanup --------------------------------------------------------------------------------------------


def cleanup_expired(
    db: Database, store: ExportStore, *, stale_after_seconds: int, now: Callable[[], datetime] = utcnow
) -> int:
    """Delete the files of expired exports (rows stay, listed as expired), mark exports stuck in
    ``running`` as failed, and sweep partial files. Returns the number of files deleted.

    Files are deleted outside any transaction (S3 calls can be slow; the SQLite write lock is only held
    for the short update). Safe to run on several servers at once: deletes are idempotent."""
    t = now()
    with db.session() as s:
        expired = s.execute(
            select(Export.id, Export.status, Export.object_key)
            .where(Export.expires_at <= t, Export.deleted_at.is_(None))
            .limit(10_000)
        ).all()
    done: list[str] = []
    deleted = 0
    for export_id, status, key in expired:
        try:
            if status == ExportStatus.READY and key:
                store.delete(key)
                deleted += 1
        except Exception:
            log.exception("could not delete the file of export %s; will retry", export_id)
            continue
        done.append(export_id)
    stale = t - timedelta(seconds=stale_after_seconds)
    with db.transaction() as w:
        if done:
            w.execute(update(Export).where(Export.id.in_(done)).values(deleted_at=t))
        w.execute(
            update(Export)
            .where(Export.status == ExportStatus.RUNNING, Export.created_at <= stale)
            .values(status=ExportStatus.FAILED, error="interrupted before completion")
        )
    if isinstance(store, LocalStore):
        store.sweep_staging(stale_after_seconds)
    return deleted


async def cleanup_periodically(db: Database, store: ExportStore, *, stale_after_seconds: int) -> None:
    """Delete expired export files every few minutes (:func:`cleanup_expired`); the app runs this as a
    lifespan step for its lifetime."""
    while True:
        try:
            n = await to_thread.run_sync(
                lambda: cleanup_expired(db, store, stale_after_seconds=stale_after_seconds)
            )
            if n:
                log.info("deleted %d expired export file(s)", n)
        except Exception:
            log.exception("export cleanup failed; retrying later")
        await asyncio.sleep(CLEANUP_INTERVAL_SECONDS)
