"""Long → wide, streaming: ``(ts, series_id, value)`` batches ordered by (ts, series_id) become
``timestamp`` + one column per series, one row per distinct timestamp, with a hard row cap.

Memory is bounded by one input batch (plus the rows of the last timestamp, carried over to the next
batch), whatever the export size. Everything is vectorised with numpy; no per-row Python objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


class WidePivot:
    """Iterate to get wide record batches; afterwards ``rows`` and ``truncated`` tell what happened.

    ``row_cap`` is enforced exactly: at most that many rows are produced, and ``truncated`` is true
    only when at least one more row existed. Reading stops as soon as the cap is decided, so a capped
    export never scans the rest of the range."""

    def __init__(
        self,
        batches: Iterable[pa.RecordBatch],
        series_ids: Sequence[int],
        schema: pa.Schema,
        row_cap: int | None = None,
    ) -> None:
        if len(schema) != len(series_ids) + 1:
            raise ValueError("schema must have a timestamp column plus one column per series")
        self._batches = batches
        self._schema = schema
        self._ncols = len(series_ids)
        ids = np.asarray(series_ids, dtype=np.int64)
        self._order = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[self._order]
        self.row_cap = row_cap
        self.rows = 0
        self.truncated = False
        self.finished = False

    # --- helpers ------------------------------------------------------------------------------------

    def _columns_of(self, sids: I64) -> tuple[I64, npt.NDArray[np.bool_]]:
        """Column index of each series id, and which ids are known (others are dropped)."""
        if self._ncols == 0:
            return np.zeros(len(sids), np.int64), np.zeros(len(sids), bool)
        pos = np.searchsorted(self._sorted_ids, sids)
        pos = np.minimum(pos, self._ncols - 1)
        known = self._sorted_ids[pos] == sids
        return self._order[pos].astype(np.int64), known

    def _wide(self, ts: I64, cols: I64, vals: F64, limit: int | None) -> pa.RecordBatch | None:
        """Rows of complete timestamp groups; at most ``limit`` rows."""
        if len(ts) == 0:
            return None
        new_row = np.empty(len(ts), dtype=bool)
        new_row[0] = True
        np.not_equal(ts[1:], ts[:-1], out=new_row[1:])
        row_idx = np.cumsum(new_row) - 1
        nrows = int(row_idx[-1]) + 1
        row_ts = ts[new_row]
        if limit is not None and nrows > limit:
            keep = row_idx < limit
            row_idx, cols, vals = row_idx[keep], cols[keep], vals[keep]
            row_ts = row_ts[:limit]
            nrows = limit
        arrays: list[pa.Array] = [pa.array(row_ts, type=pa.int64()).view(TIMESTAMP_TYPE)]
        if self._ncols == 1 and len(row_idx) == nrows:
            arrays.append(pa.array(vals, type=pa.float64()))
        else:
            out = np.zeros((self._ncols, nrows), dtype=np.float64)
            valid = np.zeros((self._ncols, nrows), dtype=bool)
            out[cols, row_idx] = vals
            valid[cols, row_idx] = True
            for c in range(self._ncols):
                v = valid[c]
                mask = None if v.all() else ~v
                arrays.append(pa.array(out[c], type=pa.float64(), mask=mask))
        self.rows += nrows
        return pa.RecordBatch.from_arrays(arrays, schema=self._schema)

    def _room(self) -> int | None:
        return None if self.row_cap is None else self.row_cap - self.rows

    # --- iteration ----------------------------------------------------------------------------------

    def _long(self, batch: pa.RecordBatch) -> tuple[I64, I64, F64] | None:
        """A long ``(ts, series_id, value)`` batch as (timestamps, column index, values), without the
        points of unknown series; None when nothing is left."""
        if batch.num_rows == 0:
            return None
        ts = np.asarray(batch.column(0).view(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
        sids = np.asarray(batch.column(1).to_numpy(zero_copy_only=False), dtype=np.int64)
        vals = np.asarray(batch.column(2).to_numpy(zero_copy_only=False), dtype=np.float64)
        cols, known = self._columns_of(sids)
        if not known.all():
            ts, cols, vals = ts[known], cols[known], vals[known]
            if len(ts) == 0:
                return None
        return ts, cols, vals

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        it = iter(self._batches)
        try:
            if self.row_cap is not None and self.row_cap <= 0:
                self.truncated = _has_data(it)
                return
            yield from self._pivot(it)
        finally:
            self.finished = True
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def _pivot(self, it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        carry: tuple[I64, I64, F64] | None = None
        for batch in it:
            long = self._long(batch)
            if long is None:
                continue
            ts, cols, vals = long if carry is None else _joined(carry, long)
            # The last timestamp may continue in the next batch: hold its points back.
            cut = int(np.searchsorted(ts, ts[-1], side="left"))
            carry = (ts[cut:], cols[cut:], vals[cut:])
            out = self._wide(ts[:cut], cols[:cut], vals[:cut], self._room())
            if out is not None:
                yield out
            if self._room() == 0:
                # Cap reached: truncated if anything at all is left.
                self.truncated = (
                    (_complete_rows(ts[:cut]) > out.num_rows if out is not None else False)
                    or len(carry[0]) > 0
                    or _has_data(it)
                )
                return
        if carry is not None:
            out = self._wide(*carry, self._room())
            if out is not None:
                self.truncated = _complete_rows(carry[0]) > out.num_rows
                yield out


def _joined(a: tuple[I64, I64, F64], b: tuple[I64, I64, F64]) -> tuple[I64, I64, F64]:
    return np.concatenate((a[0], b[0])), np.concatenate((a[1], b[1])), np.concatenate((a[2], b[2]))


def _complete_rows(ts: I64) -> int:
    """Number of distinct timestamps in a sorted array."""
    if len(ts) == 0:
        return 0
    return int(np.count_nonzero(ts[1:] != ts[:-1])) + 1


def _has_data(it: Iterator[pa.RecordBatch]) -> bool:
    return any(b.num_rows for b in it)


def wide_schema(
    names: Sequence[str],
    field_metadata: Sequence[dict[str, str]] | None = None,
    metadata: dict[str, str] | None = None,
) -> pa.Schema:
    """``timestamp`` (UTC, microseconds) plus one nullable float64 column per series."""
    fields = [pa.field("timestamp", TIMESTAMP_TYPE, nullable=False)]
    for i, name in enumerate(names):
        md = field_metadata[i] if field_metadata else None
        fields.append(pa.field(name, pa.float64(), nullable=True, metadata=md or None))
    return pa.schema(fields, metadata=metadata or None)
