"""Scale out on PostgreSQL: throughput of 1, 2 and 4 API worker processes on the same database.

    .venv/bin/python bench/scale/bench_scale.py [--workers 1,2,4] [--seconds 8] [--replica 2]

One run: a scratch database on 127.0.0.1:5432 (created and dropped here), seeded like
``bench/timeseries/bench.py`` (an owner, a PAT, 100 devices, one day of 1-minute data each, written
through the backfill route), then for each worker count a fresh server with N worker processes (what
``sensorhub serve --workers N --no-mqtt`` runs, in uvicorn with a longer worker health-check timeout)
driven by ``wrk -t1 -c32`` on:

- ``GET /api/timeseries/v2/entities/dev-0/data`` — one day at ``resolution=200`` (a downsampled read);
- ``GET /api/devices?limit=100`` — latest values of 100 devices;
- ``POST /v3/devices/{id}/backfill`` — 100 new points per request, each request a new time range of one
  of the 100 devices (``bench/scale/backfill.lua``; every point is a fresh insert, no duplicates).

Per route and worker count: requests/s, points/s, the ratio to one worker, and CPU per request of the
API (user + system of the serve process and all its worker processes, from /proc), of the database
(the PostgreSQL backends serving the scratch database, from /proc) and of wrk; plus how busy the whole
machine was (/proc/stat) and the load average, because the machine's cores are shared by the API, the
database, the load generator and anything else running.

``--replica N`` (``--workers ""`` for this part alone): a primary and a streaming replica of it started
here (``tests/pg_cluster.py``, fsync off), seeded the same way; both read routes with N workers served
once from the primary and once with ``SENSORHUB_DATABASE_REPLICA_URL`` set (CPU of the primary's and the
replica's backends apart), then the replica's lag as the server measures it (``sensorhub.replica``),
sampled every 0.1 s during a backfill run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "timeseries"))
import _common
import bench as tsbench

HERE = Path(__file__).resolve().parent

tsbench.VENV_BIN = Path(
    sys.executable
).parent  # the interpreter running this script (a worktree has no .venv)

DEVICES = tsbench.DEVICES
DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY_POINTS = 1_440
WRITE_POINTS = 100  # per backfill request (bench/scale/backfill.lua)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (uvicorn's worker processes)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_of(pids: list[int]) -> dict[int, float]:
    out = {}
    for p in pids:
        with contextlib.suppress(OSError, ValueError):  # the process ended meanwhile
            out[p] = _common.cpu_seconds(p)
    return out


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def pg_backends(pg_url: str, database: str) -> tuple[list[int], int]:
    """The pids of the backends serving ``database`` now, and how many sessions it has had so far."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as c:
        rows = c.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
        ).fetchall()
        sessions = c.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)
        ).fetchone()
    assert sessions is not None
    return [int(r[0]) for r in rows], int(sessions[0])


@dataclass
class Probe:
    """CPU of the API processes, the database backends, the load generator and the machine, from one
    moment (:meth:`start`) to another (:meth:`stop`)."""

    server_pid: int
    pg_url: str
    database: str
    replica_url: str | None = None  # the replica's server, whose backends are counted apart

    def start(self) -> None:
        self.api0 = cpu_of(descendants(self.server_pid))
        pids, self.sessions0 = pg_backends(self.pg_url, self.database)
        self.db0 = cpu_of(pids)
        self.replica0 = cpu_of(pg_backends(self.replica_url, self.database)[0]) if self.replica_url else {}
        self.machine0 = machine_jiffies()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.client0 = ru.ru_utime + ru.ru_stime

    def stop(self) -> dict[str, float]:
        api = cpu_of(descendants(self.server_pid))
        pids, sessions = pg_backends(self.pg_url, self.database)
        db = cpu_of(pids)
        replica = cpu_of(pg_backends(self.replica_url, self.database)[0]) if self.replica_url else {}
        busy, total = machine_jiffies()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "api_cpu_s": sum(v - self.api0.get(p, 0.0) for p, v in api.items()),
            "db_cpu_s": sum(v - self.db0.get(p, 0.0) for p, v in db.items()),
            "replica_cpu_s": sum(v - self.replica0.get(p, 0.0) for p, v in replica.items()),
            "client_cpu_s": ru.ru_utime + ru.ru_stime - self.client0,
            "machine_busy": (busy - self.machine0[0]) / max(1, total - self.machine0[1]),
            "db_connections": sessions - self.sessions0,
        }


def wrk(url: str, seconds: int, token: str, script: Path | None = None, *args: str) -> tuple[int, float]:
    """Requests answered and wall seconds of one wrk run (refusing any non-2xx answer)."""
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", "-H", f"Authorization: Bearer {token}"]
    cmd += ["-s", str(script), url, "--", *args] if script is not None else [url]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = run.stdout
    if "Non-2xx" in out:
        sys.exit(f"non-2xx answers under load from {url}:\n{out}{run.stderr}")
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    assert m, out
    wall = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    return int(m.group(1)), wall


def serve(
    env: dict[str, str],
    port: int,
    workers: int,
    log: Path | None = None,
    host: str = "127.0.0.1",
    netns: str | None = None,
) -> subprocess.Popen[bytes]:
    """The app (``sensorhub.app:factory``, what ``sensorhub serve --no-mqtt --no-migrate`` runs) in
    uvicorn with ``workers`` processes, told to wait 120 s for a worker's health check instead of 5: on a
    loaded machine a starting worker can take longer, and uvicorn would kill and restart it forever.
    ``netns``: run it inside that network namespace (``ip netns exec``, which execs: the pid is uvicorn's)."""
    env = {
        **env,
        **{
            f"SENSORHUB_{n}": ""
            for n in ("MQTT_LISTEN", "MQTT_TLS_LISTEN", "MQTT_WS_LISTEN", "MQTT_WSS_LISTEN")
        },
    }
    cmd = ["ip", "netns", "exec", netns] if netns else []
    cmd += [str(Path(sys.executable).parent / "uvicorn"), "sensorhub.app:factory", "--factory"]
    cmd += ["--host", host, "--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    cmd += ["--timeout-worker-healthcheck", "120"]
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL
    )


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def seed(env: dict[str, str], tmp: Path) -> str:
    """Owner, PAT and 100 devices (bench/timeseries/bench.py's setup), one day of 1-minute data each."""
    token = tsbench.setup_sensorhub(env, tmp / "sh")
    port = _common.free_port()
    server = _common.start_sensorhub(env, port, "--data-dir", str(tmp / "sh"))
    try:
        sh = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=120
        )
        ts = int(DAY0.timestamp()) * 1_000_000 + np.arange(DAY_POINTS, dtype=np.int64) * 60_000_000
        iso = np.datetime_as_string(ts.astype("datetime64[us]"), unit="s", timezone="UTC").tolist()
        rng = np.random.default_rng(1)
        for d in range(DEVICES):
            vals = rng.normal(20, 3, DAY_POINTS).round(2).tolist()
            body = orjson.dumps(
                [{"timestamp": iso[i], "data": {"temperature": vals[i]}} for i in range(DAY_POINTS)]
            )
            r = sh.post(
                f"/v3/devices/urn:ngsi-ld:Device:dev-{d}/backfill",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert r.json()["accepted"] == DAY_POINTS, r.text
    finally:
        _common.stop([server])
    return token


def routes(base: str, token: str) -> list[tuple[str, str, Path | None, int]]:
    """(label, url, wrk script, points per request) of the measured routes, after checking each answers."""
    day = {
        "start_time": z(DAY0),
        "end_time": z(DAY0 + timedelta(days=1)),
        "attribute": "temperature",
        "resolution": "200",
    }
    read = httpx.URL(base + "/api/timeseries/v2/entities/urn:ngsi-ld:Device:dev-0/data", params=day)
    auth = {"Authorization": f"Bearer {token}"}
    body = httpx.get(read, headers=auth).json()
    read_points = len(body["timestamps"])
    assert read_points == 144 and body["bucket_seconds"] == 600, (read_points, body["bucket_seconds"])
    devices = httpx.get(base + "/api/devices", params={"limit": DEVICES}, headers=auth).json()
    assert len(devices) == DEVICES
    return [
        ("read: one day @ resolution=200", str(read), None, read_points),
        ("read: GET /api/devices?limit=100", base + "/api/devices?limit=100", None, DEVICES),
        ("write: backfill, 100 points/request", base + "/v3/devices", HERE / "backfill.lua", WRITE_POINTS),
    ]


def measure(
    env: dict[str, str], tmp: Path, token: str, workers: int, seconds: int, run: int, database: str, pg: str
) -> dict[str, dict[str, float]]:
    port = _common.free_port()
    server = serve(env, port, workers)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, dict[str, float]] = {}
    try:
        _common.wait_http(base + "/healthz", timeout=600)  # worker processes start slowly on a loaded machine
        probe = Probe(server.pid, pg, database)
        for i, (label, url, script, points) in enumerate(routes(base, token)):
            # Each write run inserts into a time range of its own (epoch seconds, 6 hours apart; the
            # warm-up 3 days later), all in the month whose partition the seed created: no run pays for
            # creating a partition under load.
            first = str(int((DAY0 + timedelta(days=1, hours=6 * run)).timestamp()))
            wrk(url, 2, token, script, first, "w")  # warm-up: every worker's pool and caches
            probe.start()
            n, wall = wrk(url, seconds, token, script, first)
            cpu = probe.stop()
            out[label] = {
                "requests_per_s": n / wall,
                "points_per_s": n * points / wall,
                "api_cpu_us_per_req": cpu["api_cpu_s"] / n * 1e6,
                "db_cpu_us_per_req": cpu["db_cpu_s"] / n * 1e6,
                "wrk_cpu_us_per_req": cpu["client_cpu_s"] / n * 1e6,
                # Cores this run got (API + database + wrk), of the machine's os.cpu_count().
                "cores_used": (cpu["api_cpu_s"] + cpu["db_cpu_s"] + cpu["client_cpu_s"]) / wall,
                "db_connections_per_1000_req": cpu["db_connections"] / n * 1000,
                "machine_busy": cpu["machine_busy"],
                "load_average": os.getloadavg()[0],
            }
            print(
                workers, label, {k: round(v, 2) for k, v in out[label].items()}, file=sys.stderr, flush=True
            )
    finally:
        _common.stop([server])
    return out


def replica_comparison(env: dict[str, str], workers: int, seconds: int) -> dict[str, Any]:
    """Reads served with and without the read replica, and the replica's lag under a write load: on a
    primary and a streaming replica of it started here (``tests/pg_cluster.py``, fsync off)."""
    sys.path.insert(0, str(HERE.parents[1]))
    from sqlalchemy import create_engine
    from tests.pg_cluster import primary_and_replica

    from sensorhub.config import Settings
    from sensorhub.replica import Replica

    out: dict[str, Any] = {}
    with primary_and_replica() as cluster:
        tmp = Path(tempfile.mkdtemp(prefix="sh-scale-replica-"))
        env = {**env, "SENSORHUB_DATA_DIR": str(tmp / "sh")}
        admin = cluster.url(cluster.primary, "postgres")
        database = _common.scratch_postgres(env, admin, "sensorhub_replica")
        replica_url = cluster.url(cluster.replica, database)
        token = seed(env, tmp)
        cluster.wait_replayed()
        for mode in ("primary", "replica"):
            e = {**env, "SENSORHUB_DATABASE_REPLICA_URL": replica_url} if mode == "replica" else env
            port = _common.free_port()
            log = tmp / f"server-{mode}.log"
            server = serve(e, port, workers, log)
            base = f"http://127.0.0.1:{port}"
            try:
                try:
                    _common.wait_http(
                        base + "/healthz", timeout=600
                    )  # worker processes start slowly on a loaded machine
                except SystemExit:
                    sys.exit(f"the server did not come up:\n{log.read_text()[-3000:]}")
                probe = Probe(server.pid, admin, database, cluster.url(cluster.replica, "postgres"))
                for label, url, script, _points in routes(base, token)[:2]:
                    wrk(url, 2, token, script)
                    probe.start()
                    n, wall = wrk(url, seconds, token, script)
                    cpu = probe.stop()
                    out.setdefault(label, {})[mode] = {
                        "requests_per_s": n / wall,
                        "api_cpu_us_per_req": cpu["api_cpu_s"] / n * 1e6,
                        "primary_cpu_us_per_req": cpu["db_cpu_s"] / n * 1e6,
                        "replica_cpu_us_per_req": cpu["replica_cpu_s"] / n * 1e6,
                        "load_average": os.getloadavg()[0],
                    }
                    print(mode, label, out[label][mode], file=sys.stderr, flush=True)
                if mode == "replica":
                    settings = Settings(
                        data_dir=tmp,
                        database_url=env["SENSORHUB_DATABASE_URL"],
                        database_replica_url=replica_url,
                    )
                    primary = create_engine(settings.resolved_database_url)
                    replica = Replica(settings, str(settings.resolved_replica_url), primary)
                    out["lag_under_writes"] = lag_under_writes(replica, base, token, seconds)
                    out["readyz"] = httpx.get(base + "/readyz").json()["checks"]["database_replica"]
                    replica.dispose()
                    primary.dispose()
            finally:
                _common.stop([server])
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def lag_under_writes(replica: Any, base: str, token: str, seconds: int) -> dict[str, float]:
    """The replica's lag as the server measures it (``Replica.check``), sampled every 0.1 s while wrk
    backfills (100 points per request) for ``seconds``."""
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            st = replica.check()
            if st.lag_seconds is not None:
                samples.append((st.lag_seconds, st.lag_bytes or 0))
            done.wait(0.1)

    replica.check()  # as the server does at every interval: the replica's position while idle is known
    t = threading.Thread(target=sample)
    t.start()
    first = str(int((DAY0 + timedelta(days=10)).timestamp()))
    try:
        n, wall = wrk(base + "/v3/devices", seconds, token, HERE / "backfill.lua", first)
    finally:
        done.set()
        t.join()
    lags = sorted(x[0] for x in samples)
    return {
        "backfill_points_per_s": n * WRITE_POINTS / wall,
        "samples": len(samples),
        "lag_seconds_p50": statistics.median(lags),
        "lag_seconds_max": lags[-1],
        "lag_bytes_max": max(x[1] for x in samples),
        "within_bound_share": sum(1 for x in lags if x <= replica.max_lag) / len(lags),
    }


def report_replica(r: dict[str, Any], workers: int) -> None:
    print(
        f"\nread replica ({workers} workers):\n\n| route | reads on | requests/s | ratio | API CPU µs/req | "
        "primary CPU µs/req | replica CPU µs/req |\n|---|---|---:|---:|---:|---:|---:|"
    )
    for label, modes in r.items():
        if label in ("lag_under_writes", "readyz"):
            continue
        for mode, x in modes.items():
            print(
                f"| {label} | {mode} | {x['requests_per_s']:,.0f} | "
                f"{x['requests_per_s'] / modes['primary']['requests_per_s']:.2f} | {x['api_cpu_us_per_req']:,.0f} | "
                f"{x['primary_cpu_us_per_req']:,.0f} | {x['replica_cpu_us_per_req']:,.0f} |"
            )
    lag = r["lag_under_writes"]
    print(
        f"\nreplica lag while backfilling {lag['backfill_points_per_s']:,.0f} points/s: median "
        f"{lag['lag_seconds_p50'] * 1000:.1f} ms, max {lag['lag_seconds_max'] * 1000:.1f} ms "
        f"({lag['lag_bytes_max']:,} bytes), within the bound in {lag['within_bound_share'] * 100:.0f}% of "
        f"{lag['samples']} samples; /readyz after: {r['readyz']}"
    )


def report(results: dict[int, dict[str, dict[str, float]]], load0: float) -> None:
    print(f"\nload average before: {load0:.2f}, after: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    labels = list(next(iter(results.values())))
    one = results[min(results)]
    print(
        "\n| route | workers | requests/s | points/s | ratio to 1 worker | API CPU µs/req | "
        "PostgreSQL CPU µs/req | wrk CPU µs/req | cores used | new DB connections /1000 req | "
        "machine busy | load avg |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label in labels:
        for w, r in results.items():
            x = r[label]
            print(
                f"| {label} | {w} | {x['requests_per_s']:,.0f} | {x['points_per_s']:,.0f} | "
                f"{x['requests_per_s'] / one[label]['requests_per_s']:.2f} | {x['api_cpu_us_per_req']:,.0f} | "
                f"{x['db_cpu_us_per_req']:,.0f} | {x['wrk_cpu_us_per_req']:,.0f} | {x['cores_used']:.2f} | "
                f"{x['db_connections_per_1000_req']:.0f} | {x['machine_busy'] * 100:.0f}% | {x['load_average']:.1f} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    ap.add_argument("--seconds", type=int, default=8, help="length of each measured wrk run")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument(
        "--replica",
        type=int,
        metavar="WORKERS",
        help="also compare reads on a streaming replica with reads on the primary, with this many workers",
    )
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk")
    counts = [int(x) for x in args.workers.split(",") if x]
    tmp = Path(tempfile.mkdtemp(prefix="sh-scale-bench-"))
    env = {**os.environ, "SENSORHUB_DATA_DIR": str(tmp / "sh"), "SENSORHUB_ENV": "development"}
    # Throughput, not the per-token budget; no background jobs in the API processes.
    env |= {"SENSORHUB_RATE_LIMIT_PER_MINUTE": "100000000", "SENSORHUB_EMBEDDED_WORKER": "0"}
    load0 = os.getloadavg()[0]
    if counts:
        database = _common.scratch_postgres(env, args.pg_admin, "sensorhub_scale")
        try:
            token = seed(env, tmp)
            results = {
                w: measure(env, tmp, token, w, args.seconds, run, database, args.pg_admin)
                for run, w in enumerate(counts)
            }
            print(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
            report(results, load0)
        finally:
            _common.drop_scratch_postgres(args.pg_admin, database)
            shutil.rmtree(tmp, ignore_errors=True)
    if args.replica:
        base_env = {k: v for k, v in env.items() if k != "SENSORHUB_DATABASE_URL"}
        rep = replica_comparison(base_env, args.replica, args.seconds)
        print(orjson.dumps(rep, option=orjson.OPT_INDENT_2).decode())
        report_replica(rep, args.replica)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
