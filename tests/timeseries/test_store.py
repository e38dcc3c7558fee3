"""The store layer on real SQLite files and real PostgreSQL: ingest, rollups, reads, export batches."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import text

from sensorhub.context import AppContext
from sensorhub.kit.time import from_us, to_us
from sensorhub.timeseries import service
from sensorhub.timeseries.backends import store_for
from sensorhub.timeseries.models import ROLLUP_LEVELS, Series
from sensorhub.timeseries.query import choose_bucket_us, pieces, read_aggregated, read_series
from sensorhub.timeseries.rollups import AGGREGATIONS, aggregate_points
from tests.builders import World

T0 = to_us(datetime(2024, 1, 1, tzinfo=UTC))
S = 1_000_000


def _series(
    ctx: AppContext, world: World, entity: str = "urn:ngsi-ld:Device:d1", attribute: str = "temp"
) -> int:
    from sensorhub.entities.models import Entity

    world.org("acme")
    with ctx.db.session() as s:
        exists = s.query(Entity).filter_by(entity_id=entity).one_or_none()
    if exists is None:
        world.entity("acme", "main", entity)
    with ctx.db.transaction() as s:
        e = s.query(Entity).filter_by(entity_id=entity).one()
        return service.get_or_create_series(s, e, attribute, "CEL").id


def _raw(ctx: AppContext, sid: int) -> tuple[np.ndarray, np.ndarray]:
    with ctx.db.session() as s:
        rows = s.execute(
            text("SELECT ts, value FROM measurements WHERE series_id = :sid ORDER BY ts"), {"sid": sid}
        ).all()
    return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.float64)


def _ingest_messy(ctx: AppContext, sid: int, rng: np.random.Generator) -> dict[int, float]:
    """Three overlapping, shuffled chunks with repeated timestamps; returns what must be stored."""
    expected: dict[int, float] = {}
    base = T0 + rng.integers(0, 3 * 86400, size=4000) * S + rng.integers(0, 1000, size=4000)
    chunks = [base[:2000], base[1500:3500], np.concatenate([base[3000:], base[:200]])]
    total_acc = total_dup = 0
    for chunk in chunks:
        chunk = rng.permutation(chunk)
        vals = rng.normal(20, 5, size=len(chunk)).round(3)
        n_new = 0
        for t, v in zip(chunk.tolist(), vals.tolist(), strict=True):
            if t not in expected:
                expected[t] = v
                n_new += 1
        with ctx.db.transaction() as s:
            acc, dup = service.bulk_insert(s, sid, chunk, vals)
        assert acc == n_new
        assert acc + dup == len(chunk)
        total_acc += acc
        total_dup += dup
    assert total_acc == len(expected)
    assert total_dup > 0
    return expected


def test_rollups_match_naive_after_out_of_order_and_duplicate_ingest(ctx: AppContext, world: World) -> None:
    sid = _series(ctx, world)
    rng = np.random.default_rng(7)
    expected = _ingest_messy(ctx, sid, rng)

    ts, vals = _raw(ctx, sid)
    exp_ts = np.array(sorted(expected), dtype=np.int64)
    assert np.array_equal(ts, exp_ts)
    assert np.array_equal(vals, np.array([expected[t] for t in exp_ts.tolist()]))

    with ctx.db.session() as s:
        for width, table in ROLLUP_LEVELS:
            rows = s.execute(
                text(
                    f'SELECT bucket_start, "count", "sum", "min", "max", first_ts, "first", last_ts, "last", sumsq '
                    f"FROM {table} WHERE series_id = :sid ORDER BY bucket_start"
                ),
                {"sid": sid},
            ).all()
            got = np.array(rows, dtype=np.float64)
            buckets = ts - ts % width
            uniq = np.unique(buckets)
            assert np.array_equal(got[:, 0].astype(np.int64), uniq)
            for i, b in enumerate(uniq.tolist()):
                m = buckets == b
                bt, bv = ts[m], vals[m]
                assert got[i, 1] == m.sum()
                assert got[i, 2] == pytest.approx(bv.sum())
                assert (got[i, 3], got[i, 4]) == (bv.min(), bv.max())
                assert (int(got[i, 5]), got[i, 6]) == (bt[0], bv[0])
                assert (int(got[i, 7]), got[i, 8]) == (bt[-1], bv[-1])
                assert got[i, 9] == pytest.approx((bv * bv).sum())  # kept exact across merges
        last = s.get(Series, sid)
        assert last is not None
        assert (last.last_ts, last.last_value) == (int(ts[-1]), float(vals[-1]))


def test_bulk_insert_rejects_non_finite_and_stores_nothing(ctx: AppContext, world: World) -> None:
    from sensorhub.errors import BadRequest

    sid = _series(ctx, world)
    with pytest.raises(BadRequest, match="finite"), ctx.db.transaction() as s:
        service.bulk_insert(s, sid, [T0, T0 + S], [1.0, float("nan")])
    assert len(_raw(ctx, sid)[0]) == 0


@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_aggregated_reads_match_naive_for_every_aggregation(ctx: AppContext, world: World, agg: str) -> None:
    sid = _series(ctx, world)
    _ingest_messy(ctx, sid, np.random.default_rng(11))
    ts, vals = _raw(ctx, sid)
    # Unaligned windows force every rollup level plus raw edges to be combined.
    windows = [(T0 + 3_601 * S + 17, T0 + 86_400 * S + 59 * S), (T0 + 90_000 * S, T0 + 3 * 86_400 * S - 7)]
    with ctx.db.session() as s:
        store = store_for(s)
        for bucket in (30 * S, 60 * S, 600 * S, 3600 * S, 6 * 3600 * S, 86400 * S, 7 * 86400 * S):
            got_t, got_v = read_aggregated(store, sid, windows, bucket, agg)
            m = np.zeros(len(ts), bool)
            for lo, hi in windows:
                m |= (ts >= lo) & (ts < hi)
            exp_t, exp_v = aggregate_points(ts[m], vals[m], bucket, agg)
            assert np.array_equal(got_t, exp_t), (agg, bucket)
            np.testing.assert_allclose(got_v, exp_v, rtol=1e-9, err_msg=f"{agg} {bucket}")


def test_pieces_use_the_coarsest_level_and_cover_the_range() -> None:
    lo, hi = T0 + 90 * S + 5, T0 + 3 * 86_400 * S + 3_700 * S
    ps = pieces(lo, hi, 86_400 * S)
    assert ps[0][1] == lo and ps[-1][2] == hi
    for a, b in itertools.pairwise(ps):
        assert a[2] == b[1]
    tables = [p[0] for p in ps]
    assert "rollup_1d" in tables and "measurements" in tables
    assert pieces(T0, T0 + 86_400 * S, 30 * S) == [("measurements", T0, T0 + 86_400 * S)]
    assert pieces(T0, T0 + 2 * 86_400 * S, 86_400 * S) == [("rollup_1d", T0, T0 + 2 * 86_400 * S)]


@pytest.mark.parametrize(
    ("span_s", "resolution", "bucket_s"),
    [
        (3600, 3600, 1),
        (3600, 1000, 5),
        (86400, 200, 600),
        (86400, 100, 900),
        (86400, 1440, 60),
        (86400, 1439, 300),
        (365 * 86400, 200, 7 * 86400),
        (365 * 86400, 400, 86400),
        (365 * 86400, 8760, 3600),
        (10 * 365 * 86400, 10, 53 * 7 * 86400),
    ],
)
def test_resolution_picks_the_smallest_standard_bucket(span_s: int, resolution: int, bucket_s: int) -> None:
    assert choose_bucket_us(span_s * S, resolution) == bucket_s * S


def test_read_series_is_raw_when_it_fits_and_aggregated_otherwise(ctx: AppContext, world: World) -> None:
    sid = _series(ctx, world)
    ts = T0 + np.arange(1000, dtype=np.int64) * 60 * S
    with ctx.db.transaction() as s:
        service.bulk_insert(s, sid, ts, np.arange(1000, dtype=np.float64))
    end = T0 + 1000 * 60 * S
    with ctx.db.session() as s:
        store = store_for(s)
        r = read_series(store, [(sid, [(T0, end)], "avg")], T0, end, 1000)
        assert r.bucket_us is None and len(r.timestamps) == 1000
        r = read_series(store, [(sid, [(T0, end)], "avg")], T0, end, 999)
        assert r.bucket_us == 300 * S  # 1000 min / 999 → 60.06 s → 5 min
        assert len(r.timestamps) == 200
        assert r.series[0].values[0] == pytest.approx(2.0)  # avg of 0..4
        r = read_series(store, [(sid, [(T0, end)], "max")], T0, end, 10)
        assert r.bucket_us == 7200 * S
        assert r.series[0].values[0] == 119.0


def test_reads_decided_by_a_rollup_answer_as_the_raw_probe_would(
    ctx: AppContext, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a range longer than two days (hours), "more points than the resolution" is read off the day
    (hour) rollup instead of a raw probe; the answer is the same as with the probe alone, dense
    (aggregated) and sparse (raw)."""
    from sensorhub.timeseries import query

    dense, sparse = _series(ctx, world, attribute="dense"), _series(ctx, world, attribute="sparse")
    hours = T0 + np.arange(24 * 30, dtype=np.int64) * 3600 * S  # 30 days, hourly: 720 points
    with ctx.db.transaction() as s:
        service.bulk_insert(s, dense, hours, np.arange(len(hours), dtype=np.float64))
        service.bulk_insert(s, sparse, hours[::100], np.arange(len(hours[::100]), dtype=np.float64))
    lo, hi = T0 + 7 * 3600 * S, T0 + 29 * 86400 * S  # not day-aligned at either end
    day = (T0 + 1800 * S, T0 + 20 * 3600 * S + 60 * S)  # ~20 hours, not hour-aligned: 19 whole hours

    def both(sid: int, resolution: int, lo: int, hi: int) -> tuple[query.ReadResult, query.ReadResult]:
        with ctx.db.session() as s:
            store = store_for(s)
            fast = read_series(store, [(sid, [(lo, hi)], "avg")], lo, hi, resolution)
            with monkeypatch.context() as m:
                m.setattr(query, "_surely_more_than", lambda *a: False)
                plain = read_series(store, [(sid, [(lo, hi)], "avg")], lo, hi, resolution)
        return fast, plain

    with ctx.db.session() as s:  # the shortcut is taken where a rollup proves it, and only there
        assert query._surely_more_than(store_for(s), dense, [(lo, hi)], 200)
        assert not query._surely_more_than(store_for(s), sparse, [(lo, hi)], 200)
        assert query._surely_more_than(store_for(s), dense, [day], 18)
        assert not query._surely_more_than(store_for(s), dense, [day], 19)
    cases = [(dense, 200, False, lo, hi), (sparse, 200, True, lo, hi), (dense, 5000, True, lo, hi)]
    cases += [(dense, 10, False, *day), (dense, 19, False, *day), (dense, 20, True, *day)]  # 20 points
    for sid, resolution, raw, a, b in cases:
        fast, plain = both(sid, resolution, a, b)
        assert (fast.bucket_us is None) is raw
        assert fast.bucket_us == plain.bucket_us
        assert fast.timestamps.tolist() == plain.timestamps.tolist()
        assert fast.series[0].values.tolist() == plain.series[0].values.tolist()


def test_iter_raw_batches_orders_clamps_and_streams(ctx: AppContext, world: World) -> None:
    a = _series(ctx, world, attribute="a")
    b = _series(ctx, world, attribute="b")
    ts = T0 + np.arange(5000, dtype=np.int64) * 10 * S
    with ctx.db.transaction() as s:
        service.bulk_insert(s, a, ts, np.ones(5000))
        service.bulk_insert(s, b, ts[::2], np.full(2500, 2.0))
    w_end = from_us(T0 + 20_000 * S)
    windows = {a: [(None, None)], b: [(from_us(T0 + 1_000 * S), w_end)]}
    with ctx.db.session() as s:
        # A series without readable windows yields nothing.
        assert list(service.iter_raw_batches(s, [a, b], {}, from_us(T0), from_us(T0 + 40_000 * S))) == []
    with ctx.db.session() as s:
        batches = list(
            service.iter_raw_batches(
                s, [a, b], windows, from_us(T0), from_us(T0 + 40_000 * S), batch_rows=500
            )
        )
    assert all(bt.num_rows <= 500 for bt in batches)
    assert batches[0].schema == service.BATCH_SCHEMA
    import pyarrow as pa

    tbl = pa.Table.from_batches(batches)
    got_ts = tbl["ts"].cast(pa.int64()).to_numpy()
    got_sid = tbl["series_id"].to_numpy()
    keys = got_ts.astype(object) * 10**6 + got_sid  # (ts, series_id) ordering
    assert list(keys) == sorted(keys)
    assert (got_sid == a).sum() == 4000
    b_ts = got_ts[got_sid == b]
    assert b_ts.min() == T0 + 1_000 * S  # window start included
    assert b_ts.max() < T0 + 20_000 * S  # window end excluded
    assert (T0 + 20_000 * S) in set(ts[::2].tolist())
    assert len(b_ts) == (20_000 - 1_000) // 20


@pytest.mark.parametrize("backend", ["sqlite"])  # the per-series readers are SQLite's
def test_iter_raw_batches_sqlite_readers_agree_with_the_generic_scan(
    backend: str, ctx: AppContext, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite, exports read per series by key and merge by time — in a child process through
    adbc-driver-sqlite for large reads, or through the server's own sqlite3 connection — and get
    exactly the rows, in the order, of the generic time-sliced scan; windows and batch sizes hold."""
    assert ctx.db.dialect == "sqlite"
    import pyarrow as pa

    from sensorhub.timeseries import sqlite as sqlite_store

    a = _series(ctx, world, attribute="a")
    b = _series(ctx, world, attribute="b")
    c = _series(ctx, world, attribute="c")
    rng = np.random.default_rng(11)
    ts_a = T0 + np.arange(6000, dtype=np.int64) * 10 * S
    ts_b = np.unique(T0 + rng.integers(0, 60_000, 1500) * S + rng.integers(0, 3, 1500))  # sparse, own times
    with ctx.db.transaction() as s:
        service.bulk_insert(s, a, ts_a, rng.normal(size=len(ts_a)))
        service.bulk_insert(s, b, ts_b, rng.normal(size=len(ts_b)))
        service.bulk_insert(s, c, ts_a[::3], rng.normal(size=len(ts_a[::3])))  # shares a's timestamps
    w = from_us
    windows = {
        a: [(None, None)],
        # Two overlapping windows and a disjoint one: each point once, ends excluded.
        b: [
            (w(T0 + 5_000 * S), w(T0 + 20_000 * S)),
            (w(T0 + 15_000 * S), w(T0 + 25_000 * S)),
            (w(T0 + 40_000 * S), None),
        ],
        c: [(w(T0 + 1_000 * S), w(T0 + 30_000 * S))],
    }
    start, end = w(T0 + 100 * S), w(T0 + 55_000 * S)
    children: list[int] = []
    real = sqlite_store._child_or_local

    def spy(*args: object) -> object:
        children.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_store, "_child_or_local", spy)

    def read(ids: list[int]) -> list[pa.RecordBatch]:
        with ctx.db.session() as s:
            return list(service.iter_raw_batches(s, ids, windows, start, end, batch_rows=700))

    cases = (("abc", [a, b, c]), ("a", [a]), ("b", [b]))
    local = {key: read(ids) for key, ids in cases}  # small reads stay in the process
    assert children == []
    with monkeypatch.context() as m:
        m.setattr(sqlite_store, "CHILD_READER_MIN_POINTS", 0)  # every read goes to the child process
        child = {key: read(ids) for key, ids in cases}
        assert len(children) == 3
        # A child that cannot start (here: a module that does not exist) falls back to sqlite3.
        m.setattr(sqlite_store, "CHILD_MODULE", "sensorhub.no_such_module")
        fallback = {key: read(ids) for key, ids in cases}
    with monkeypatch.context() as m:
        m.setattr(sqlite_store.SQLiteStore, "iter_raw_arrow", lambda *args: None)  # the generic scan
        generic = {key: read(ids) for key, ids in cases}
    for key in local:
        want = pa.Table.from_batches(generic[key], schema=service.BATCH_SCHEMA)
        for name, got_batches in (("local", local), ("child", child), ("fallback", fallback)):
            assert all(bt.schema == service.BATCH_SCHEMA for bt in got_batches[key]), (key, name)
            assert all(0 < bt.num_rows <= 700 for bt in got_batches[key]), (key, name)
            got = pa.Table.from_batches(got_batches[key], schema=service.BATCH_SCHEMA)
            assert got.equals(want), (key, name)
    fast = local

    tbl = pa.Table.from_batches(fast["abc"])
    got_ts = tbl["ts"].cast(pa.int64()).to_numpy()
    got_sid = tbl["series_id"].to_numpy()
    lo, hi = T0 + 100 * S, T0 + 55_000 * S
    exp_b = ts_b[(ts_b >= T0 + 5_000 * S) & (ts_b < T0 + 25_000 * S) | (ts_b >= T0 + 40_000 * S)]
    exp_c = ts_a[::3][(ts_a[::3] >= T0 + 1_000 * S) & (ts_a[::3] < T0 + 30_000 * S)]
    assert np.array_equal(got_ts[got_sid == a], ts_a[(ts_a >= lo) & (ts_a < hi)])
    assert np.array_equal(got_ts[got_sid == b], exp_b[(exp_b >= lo) & (exp_b < hi)])
    assert np.array_equal(got_ts[got_sid == c], exp_c)
    order = np.lexsort((got_sid, got_ts))
    assert np.array_equal(order, np.arange(len(order)))  # (ts, series_id), ties included


def test_iter_raw_batches_sees_the_sessions_own_writes(ctx: AppContext, world: World) -> None:
    """A session that has written keeps reading through its own connection (a second connection would
    not see the uncommitted points)."""
    a = _series(ctx, world, attribute="a")
    with ctx.db.write_session() as s:
        service.bulk_insert(s, a, [T0, T0 + S], [1.0, 2.0])
        if ctx.db.dialect == "sqlite":
            from sensorhub.timeseries import sqlite as sqlite_store

            # Even a read large enough for the child process stays on this connection.
            with pytest.MonkeyPatch.context() as m:
                m.setattr(sqlite_store, "CHILD_READER_MIN_POINTS", 0)
                got = list(store_for(s).iter_raw_arrow({a: [(T0, T0 + 2 * S)]}, 100))
            assert sum(bt.num_rows for bt in got) == 2
        batches = list(
            service.iter_raw_batches(s, [a], {a: [(None, None)]}, from_us(T0), from_us(T0 + 9 * S))
        )
        assert sum(bt.num_rows for bt in batches) == 2
        s.rollback()


def test_sqlite_in_memory_database_has_no_file() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from sensorhub.timeseries.sqlite import SQLiteStore

    with Session(create_engine("sqlite://")) as s:
        store = SQLiteStore(s)
        assert store.database_file() is None


def test_iter_bucket_batches_match_naive(ctx: AppContext, world: World) -> None:
    a = _series(ctx, world, attribute="a")
    rng = np.random.default_rng(3)
    ts = np.unique(T0 + rng.integers(0, 10 * 86400, 20_000) * S)
    vals = rng.normal(size=len(ts))
    with ctx.db.transaction() as s:
        service.bulk_insert(s, a, ts, vals)
    with ctx.db.session() as s:
        batches = list(
            service.iter_bucket_batches(
                s, [a], {a: [(None, None)]}, from_us(T0), from_us(T0 + 10 * 86400 * S), 3600, "max", 100
            )
        )
    import pyarrow as pa

    tbl = pa.Table.from_batches(batches)
    exp_t, exp_v = aggregate_points(ts, vals, 3600 * S, "max")
    assert np.array_equal(tbl["ts"].cast(pa.int64()).to_numpy(), exp_t)
    np.testing.assert_allclose(tbl["value"].to_numpy(), exp_v)


def test_deleting_an_entity_removes_its_points_and_rollups(ctx: AppContext, world: World) -> None:
    sid = _series(ctx, world)
    with ctx.db.transaction() as s:
        service.bulk_insert(s, sid, [T0, T0 + S], [1.0, 2.0])
    with ctx.db.transaction() as s:
        s.execute(text("DELETE FROM entities"))
    with ctx.db.session() as s:
        for t in ("series", "measurements", "rollup_1m", "rollup_1h", "rollup_1d"):
            assert s.execute(text(f"SELECT count(*) FROM {t}")).scalar() == 0, t


def test_concurrent_overlapping_ingest_stays_idempotent(ctx: AppContext, world: World) -> None:
    """Two writers backfilling overlapping ranges of one series at once: every timestamp is stored
    once, accepted counts add up, and the rollups match the stored points."""
    import threading

    from sensorhub.entities.models import Entity

    world.org("acme")
    world.entity("acme", "main", "urn:c")
    ts = T0 + np.arange(20_000, dtype=np.int64) * S
    chunks = [ts[:12_000], ts[8_000:]]
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def writer(part: np.ndarray) -> None:
        try:
            barrier.wait()
            with ctx.db.transaction() as s:
                e = s.query(Entity).filter_by(entity_id="urn:c").one()
                sid = service.get_or_create_series(s, e, "t", None).id
                results.append(service.bulk_insert(s, sid, part, np.ones(len(part))))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(a for a, _ in results) == 20_000
    assert sum(d for _, d in results) == 4_000
    with ctx.db.session() as s:
        assert s.execute(text("SELECT count(*) FROM series")).scalar() == 1
        assert s.execute(text("SELECT count(*), sum(value) FROM measurements")).one() == (20_000, 20_000.0)
        for _, table in ROLLUP_LEVELS:
            assert s.execute(text(f'SELECT sum("count"), sum("sum") FROM {table}')).one() == (
                20_000,
                20_000.0,
            )
