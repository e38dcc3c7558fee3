"""Importing CSV and Parquet files into existing entities (``sensorhub import``).

Two layouts:

- **long**: columns ``entity_id, attribute, timestamp, value`` (and optionally ``unit``), one point per row;
- **wide** (with ``--entity``): a ``timestamp`` column and one numeric column per attribute.

Timestamps are ISO 8601 strings (``Z`` or an offset; without one they are UTC) or typed timestamps.
Empty cells are gaps and are skipped (counted in ``empty``); NaN/Infinity are errors. The file is
streamed in chunks but imported in **one transaction**: any error leaves nothing of it behind.
Entities must exist (in the organisation, and the workspace if given); importing never creates them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sensorhub.accounts.models import Organisation, Workspace
from sensorhub.accounts.service import get_org, get_workspace
from sensorhub.entities.models import Entity
from sensorhub.errors import BadRequest, NotFound
from sensorhub.kit.time import check_points_in_range, parse_iso, to_us
from sensorhub.timeseries.names import check_attribute_name, check_device_ref
from sensorhub.timeseries.service import bulk_insert, get_or_create_series

LONG_COLUMNS = ("entity_id", "attribute", "timestamp", "value")
UTC_US = pa.timestamp("us", tz="UTC")


class ImportFileError(BadRequest):
    """A file that cannot be imported; the message says where and why."""


@dataclass
class ImportReport:
    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    empty: int = 0
    series: dict[str, int] = field(default_factory=dict)  # "<entity>.<attribute>" → accepted points


def _batches(path: Path, chunk_rows: int) -> tuple[Iterator[pa.RecordBatch], int, list[str]]:
    """Record batches of the file, the total size in bytes (for progress) and the column names."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        f = pq.ParquetFile(path)
        return f.iter_batches(batch_size=chunk_rows), f.metadata.num_rows, f.schema_arrow.names
    if suffix in (".csv", ".txt", ".gz"):
        # Read every column as text first: typing is ours (errors name the row and column).
        reader0 = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20))
        names = reader0.schema.names
        reader0.close()
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=4 << 20),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}),
        )
        return iter(reader), path.stat().st_size, names
    raise ImportFileError(f"{path.name}: unsupported file type '{suffix}'; use .csv or .parquet")


def _timestamps(col: pa.Array | pa.ChunkedArray, first_row: int, name: str) -> np.ndarray:
    """int64 microseconds (UTC) of a timestamp column; raises naming the first bad row."""
    if pa.types.is_timestamp(col.type):
        t = col if col.type.tz else pc.assume_timezone(col, "UTC")
        arr = pc.cast(t, UTC_US)
    else:
        arr = None
        s = pc.cast(col, pa.string())
        for target in (UTC_US, pa.timestamp("us")):
            try:
                arr = pc.cast(s, target)
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        if arr is None:
            values = s.to_pylist()
            out = np.empty(len(values), np.int64)
            for i, v in enumerate(values):
                if v is None or v == "":
                    raise ImportFileError(f"row {first_row + i}: {name} is empty")
                out[i] = to_us(parse_iso(v, f"row {first_row + i}: {name}"))
            return _in_range(out, first_row, name)
    if arr.null_count:
        i = int(np.flatnonzero(pc.is_null(arr).to_numpy(zero_copy_only=False))[0])
        raise ImportFileError(f"row {first_row + i}: {name} is empty")
    return _in_range(
        np.asarray(pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64), first_row, name
    )


def _in_range(ts: np.ndarray, first_row: int, name: str) -> np.ndarray:
    check_points_in_range(ts, lambda i: f"row {first_row + i}: {name}", ImportFileError)
    return ts


def _values(col: pa.Array | pa.ChunkedArray, first_row: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, mask of present cells); empty cells are gaps, non-numbers and NaN are errors."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        stripped = pc.utf8_trim_whitespace(col)
        col = pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), stripped)
    try:
        arr = pc.cast(col, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for i, v in enumerate(col.to_pylist()):
            try:
                if v is not None:
                    float(v)
            except (TypeError, ValueError):
                raise ImportFileError(f"row {first_row + i}: {name} '{v}' is not a number") from None
        raise ImportFileError(f"column {name} is not numeric") from None
    present = ~pc.is_null(arr).to_numpy(zero_copy_only=False)
    vals = arr.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    bad = present & ~np.isfinite(vals)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ImportFileError(f"row {first_row + i}: {name} is {vals[i]}; send finite numbers")
    return vals, present


class _Resolver:
    def __init__(self, s: Session, org: Organisation, ws: Workspace | None) -> None:
        self.s, self.org, self.ws = s, org, ws
        self.entities: dict[str, Entity] = {}
        self.series: dict[tuple[str, str], int] = {}

    def entity(self, ref: str) -> Entity:
        e = self.entities.get(ref)
        if e is None:
            # tenancy: an operator import (CLI) into the organisation / workspace it names
            q = select(Entity).where(
                Entity.org_id == self.org.id, or_(Entity.entity_id == ref, Entity.asset_id == ref)
            )
            if self.ws is not None:
                # tenancy: as above
                q = q.where(Entity.workspace_id == self.ws.id)
            e = self.s.scalar(q)
            if e is None:
                where = f"workspace '{self.ws.slug}'" if self.ws else f"organisation '{self.org.slug}'"
                raise NotFound(
                    f"entity '{ref}' not found in {where}; create it first (import never creates entities)"
                )
            self.entities[ref] = e
        return e

    def series_id(self, ref: str, attribute: str, unit: str | None) -> int:
        key = (ref, attribute)
        sid = self.series.get(key)
        if sid is None:
            sid = get_or_create_series(self.s, self.entity(ref), attribute, unit).id
            self.series[key] = sid
        return sid


def import_file(
    s: Session,
    path: Path,
    org_ref: str,
    workspace_ref: str | None = None,
    entity_ref: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = 200_000,
) -> ImportReport:
    """Import one file in the session's transaction (the caller commits). ``progress(done, total)``
    is called after every chunk (bytes for CSV, rows for Parquet)."""
    org = get_org(s, org_ref)
    ws = get_workspace(s, org, workspace_ref) if workspace_ref else None
    res = _Resolver(s, org, ws)
    batches, total, names = _batches(path, chunk_rows)
    _check_layout(res, path, names, entity_ref)
    report = ImportReport()
    done = 0
    parquet = path.suffix.lower() == ".parquet"
    row0 = 1 if parquet else 2  # CSV row numbers count the header line
    for batch in batches:
        n = batch.num_rows
        ts = _timestamps(batch.column("timestamp"), row0, "timestamp")
        if entity_ref is None:
            _import_long(res, batch, ts, row0, report)
        else:
            _import_wide(res, batch, ts, row0, report, entity_ref, names)
        report.rows += n
        row0 += n
        done = done + n if total and parquet else min(total, done + batch.nbytes)
        if progress:
            progress(done, total)
    if progress:
        progress(total, total)
    return report


def _check_layout(res: _Resolver, path: Path, names: list[str], entity_ref: str | None) -> None:
    """A long file has the long columns; a wide one (``entity_ref`` given) a timestamp column and
    attribute names as the other columns, and its entity exists."""
    if entity_ref is None:
        if not all(c in names for c in LONG_COLUMNS):
            raise ImportFileError(
                f"{path.name}: expected columns {', '.join(LONG_COLUMNS)} (long format), "
                "or give --entity for a wide file (timestamp + one column per attribute)"
            )
        return
    if "timestamp" not in names:
        raise ImportFileError(f"{path.name}: a wide file needs a 'timestamp' column")
    res.entity(entity_ref)
    for name in names:
        if name != "timestamp":
            check_attribute_name(name, f"{path.name}: column")


def _import_wide(
    res: _Resolver,
    batch: pa.RecordBatch,
    ts: np.ndarray,
    row0: int,
    report: ImportReport,
    entity_ref: str,
    names: list[str],
) -> None:
    for name in names:
        if name == "timestamp":
            continue
        vals, present = _values(batch.column(name), row0, name)
        report.empty += int((~present).sum())
        _store(res, report, entity_ref, name, None, ts[present], vals[present])


def _store(
    res: _Resolver,
    report: ImportReport,
    ref: str,
    attribute: str,
    unit: str | None,
    ts: np.ndarray,
    vals: np.ndarray,
) -> None:
    if not len(ts):
        return
    sid = res.series_id(ref, attribute, unit)
    a, d = bulk_insert(res.s, sid, ts, vals)
    report.accepted += a
    report.duplicates += d
    key = f"{res.entity(ref).entity_id}.{attribute}"
    report.series[key] = report.series.get(key, 0) + a


def _import_long(
    res: _Resolver, batch: pa.RecordBatch, ts: np.ndarray, row0: int, report: ImportReport
) -> None:
    ent = pc.cast(batch.column("entity_id"), pa.string())
    att = pc.cast(batch.column("attribute"), pa.string())
    for name, col in (("entity_id", ent), ("attribute", att)):
        if col.null_count or pc.any(pc.equal(col, "")).as_py():
            i = int(np.flatnonzero(pc.fill_null(pc.equal(col, ""), True).to_numpy(zero_copy_only=False))[0])
            raise ImportFileError(f"row {row0 + i}: {name} is empty")
    vals, present = _values(batch.column("value"), row0, "value")
    report.empty += int((~present).sum())
    units = pc.cast(batch.column("unit"), pa.string()) if "unit" in batch.schema.names else None
    keys = pc.binary_join_element_wise(ent, att, "\x00")
    dict_keys = pc.dictionary_encode(keys)
    codes = dict_keys.indices.to_numpy(zero_copy_only=False)
    for code, key in enumerate(dict_keys.dictionary.to_pylist()):
        ref, attribute = key.split("\x00", 1)
        if (ref, attribute) not in res.series:
            row = row0 + int(np.flatnonzero(codes == code)[0])
            check_device_ref(ref, f"row {row}: entity_id")
            check_attribute_name(attribute, f"row {row}: attribute")
        m = (codes == code) & present
        if not m.any():
            continue
        unit = None
        if units is not None:
            u = [x for x in units.filter(pa.array(m)).to_pylist() if x]
            unit = u[0] if u else None
        _store(res, report, ref, attribute, unit, ts[m], vals[m])
