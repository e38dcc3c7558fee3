"""NGSI-LD geo and temporal benchmark: sensorhub's answer vs the same answer computed the plain way.

    .venv/bin/python bench/ngsi_ld/geo_temporal.py               # embedded SQLite
    .venv/bin/python bench/ngsi_ld/geo_temporal.py --postgres    # PostgreSQL at 127.0.0.1:5432 (scratch DB)

Scenarios (one run, same database; sensorhub called through its ASGI app with a token, in process):
  (a) 100,000 located entities (points in a 1°x1° area, 4 types): ``GET /ngsi-ld/v1/entities?type=Sensor&
      q=kind=="a"&georel=near;maxDistance==2000&geometry=Point&coordinates=[…]`` vs plain Python over
      the same rows with no index: SELECT them all, shapely points, WGS84 distance (geographiclib);
  (b) a year of 10-minute data on 10 stations (525,600 points): ``GET /ngsi-ld/v1/temporal/entities?
      type=Station&options=aggregatedValues&aggrMethods=avg,min,max&aggrPeriodDuration=P1D&timerel=between…``
      vs plain SQL GROUP BY day over the raw rows.
Both answers are compared before timing. Prints a Markdown table (medians).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely
from fastapi.testclient import TestClient
from geographiclib.geodesic import Geodesic
from sqlalchemy import create_engine, insert, text

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.builders import World  # noqa: E402

from sensorhub.app import create_app  # noqa: E402
from sensorhub.config import Settings  # noqa: E402
from sensorhub.context import AppContext  # noqa: E402
from sensorhub.entities.geo import entity_bbox  # noqa: E402
from sensorhub.entities.models import Entity  # noqa: E402
from sensorhub.migrate import upgrade  # noqa: E402
from sensorhub.timeseries import service as ts  # noqa: E402

N_ENTITIES = 100_000
STATIONS = 10
YEAR = datetime(2025, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=10)
POINTS = 52_560  # a year of 10-minute data
CENTER = (8.5417, 47.3769)
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def median_ms(fn: Callable[[], Any], n: int, warm: bool = True) -> float:
    if warm:
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def load(ctx: AppContext, world: World) -> dict[str, Any]:
    world.org("bench", ("main",))
    world.user("b@bench.test", "bench", "owner")
    org = world.workspace("bench", "main")
    rng = np.random.default_rng(1)
    lon = CENTER[0] - 0.5 + rng.random(N_ENTITIES)
    lat = CENTER[1] - 0.5 + rng.random(N_ENTITIES)
    kinds = rng.choice(["a", "b", "c"], N_ENTITIES)
    types = np.array(["Sensor", "Device", "Parcel", "Meter"])[rng.integers(0, 4, N_ENTITIES)]
    rows = []
    for i in range(N_ENTITIES):
        loc = {"type": "Point", "coordinates": [round(float(lon[i]), 6), round(float(lat[i]), 6)]}
        box = entity_bbox(loc)
        assert box is not None
        rows.append(
            {
                "entity_id": f"urn:ngsi-ld:{types[i]}:e{i:06d}",
                "asset_id": uuid.uuid4().hex[:16],
                "org_id": org.org_id,
                "workspace_id": org.id,
                "type": str(types[i]),
                "attrs": {"kind": {"type": "Property", "value": str(kinds[i])}},
                "location": loc,
                "geo_min_lon": box[0],
                "geo_min_lat": box[1],
                "geo_max_lon": box[2],
                "geo_max_lat": box[3],
                "geo_lat_span": 0.0,
                "created_at": datetime.now(UTC),
                "modified_at": datetime.now(UTC),
            }
        )
    t0 = time.perf_counter()
    with ctx.db.transaction() as s:
        for i in range(0, len(rows), 5000):
            s.execute(insert(Entity), rows[i : i + 5000])
    print(f"  entities: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    t0 = time.perf_counter()
    stamps = np.arange(POINTS, dtype=np.int64) * int(STEP.total_seconds() * 1e6) + int(YEAR.timestamp() * 1e6)
    series = []
    for k in range(STATIONS):
        e = world.entity("bench", "main", f"urn:ngsi-ld:Station:s{k:02d}", "Station")
        with ctx.db.transaction() as s:
            sid = ts.get_or_create_series(s, e, "temperature", "CEL").id
            vals = 10 + 10 * np.sin(np.arange(POINTS) / 144 * 2 * np.pi) + rng.normal(0, 1, POINTS)
            ts.bulk_insert(s, sid, stamps, np.round(vals, 3))
        series.append(sid)
    print(f"  points: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return {"token": world.pat("b@bench.test", ["entities", "timeseries"]), "series": series}


def geo_plain(ctx: AppContext) -> set[str]:
    """No index: every row, shapely points, WGS84 distances."""
    with ctx.db.session() as s:
        rows = s.execute(text("SELECT entity_id, type, attrs, location FROM entities")).all()
    g = Geodesic.WGS84
    out = set()
    for eid, etype, attrs, loc in rows:
        if etype != "Sensor":
            continue
        attrs = orjson.loads(attrs) if isinstance(attrs, str) else attrs
        if attrs["kind"]["value"] != "a":
            continue
        p = shapely.from_geojson(loc if isinstance(loc, str) else orjson.dumps(loc))
        if g.Inverse(CENTER[1], CENTER[0], p.y, p.x)["s12"] <= 2000:
            out.add(eid)
    return out


def temporal_plain(ctx: AppContext, series: list[int]) -> dict[int, list[tuple[int, float, float, float]]]:
    day = 86_400_000_000
    lo = int(YEAR.timestamp() * 1e6)
    q = text(
        f"SELECT series_id, ts - (ts % {day}) AS d, avg(value), min(value), max(value) FROM measurements "
        f"WHERE series_id IN ({','.join(map(str, series))}) AND ts >= :lo AND ts < :hi GROUP BY 1, 2 ORDER BY 1, 2"
    )
    with ctx.db.session() as s:
        out: dict[int, list[tuple[int, float, float, float]]] = {}
        for sid, d, a, mn, mx in s.execute(q, {"lo": lo, "hi": lo + 365 * day}):
            out.setdefault(int(sid), []).append((int(d), float(a), float(mn), float(mx)))
    return out


def run(settings: Settings, label: str) -> list[str]:
    ctx = AppContext.build(settings)
    upgrade(ctx.db)
    world = World(ctx)
    t0 = time.perf_counter()
    data = load(ctx, world)
    print(f"[{label}] loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    client = TestClient(create_app(settings, ctx))
    h = {"Authorization": f"Bearer {data['token']}"}
    geo_params = {
        "type": "Sensor",
        "q": 'kind=="a"',
        "georel": "near;maxDistance==2000",
        "geometry": "Point",
        "coordinates": f"[{CENTER[0]},{CENTER[1]}]",
        "limit": "500",
    }

    def geo_api() -> set[str]:
        r = client.get("/ngsi-ld/v1/entities", params=geo_params, headers=h)
        assert r.status_code == 200, r.text
        return {e["id"] for e in r.json()}

    want = geo_plain(ctx)
    assert geo_api() == want and want, (len(geo_api()), len(want))
    t_api = median_ms(geo_api, 20)
    t_plain = median_ms(lambda: geo_plain(ctx), 2, warm=False)  # already run once above
    tparams = {
        "type": "Station",
        "attrs": "temperature",
        "options": "aggregatedValues",
        "aggrMethods": "avg,min,max",
        "aggrPeriodDuration": "P1D",
        "timerel": "between",
        "timeAt": "2025-01-01T00:00:00Z",
        "endTimeAt": "2026-01-01T00:00:00Z",
    }

    def temporal_api() -> list[Any]:
        r = client.get("/ngsi-ld/v1/temporal/entities", params=tparams, headers=h)
        assert r.status_code == 200, r.text
        out: list[Any] = r.json()
        return out

    got = temporal_api()
    plain = temporal_plain(ctx, data["series"])
    for e, sid in zip(got, data["series"], strict=True):
        avg = [row[0] for row in e["temperature"]["avg"]]
        assert len(avg) == 365 and np.allclose(avg, [p[1] for p in plain[sid]]), e["id"]
        assert [row[0] for row in e["temperature"]["max"]] == [p[3] for p in plain[sid]]
    t_tapi = median_ms(temporal_api, 10)
    t_tsql = median_ms(lambda: temporal_plain(ctx, data["series"]), 3, warm=False)
    client.close()
    ctx.db.dispose()
    return [
        f"| {label} | (a) `q` + `georel=near;maxDistance==2000` over 100,000 located entities ({len(want)} hits) "
        f"| {t_api:.1f} ms | plain Python, shapely + WGS84, no index: {t_plain:.0f} ms | **{t_plain / t_api:.0f}x** |",
        f"| {label} | (b) `aggrPeriodDuration=P1D` avg/min/max over a year of 10-minute data, 10 stations "
        f"| {t_tapi:.1f} ms | plain SQL GROUP BY day on the raw rows: {t_tsql:.0f} ms | **{t_tsql / t_tapi:.1f}x** |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--postgres", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        if args.postgres:
            name = f"sensorhub_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
                lines = run(
                    Settings(
                        data_dir=Path(d), database_url=url, secret_key="bench-secret-key-0123456789-abcdef"
                    ),
                    "PostgreSQL",
                )
            finally:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            lines = run(Settings(data_dir=Path(d)), "SQLite")
    print("| backend | query | sensorhub (median) | peer (median) | ratio |")
    print("|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
