"""Line-protocol writes: sensorhub vs InfluxDB 1.6 vs VictoriaMetrics, same data, one run.

    .venv/bin/python bench/ingest/bench_line_protocol.py              # sensorhub on embedded SQLite
    .venv/bin/python bench/ingest/bench_line_protocol.py --postgres   # sensorhub on PostgreSQL (scratch DB)

Each server gets the same line-protocol bodies: a year of 1-minute data (525,600 points) of one device,
in requests of 5,000 lines (``temperature,device=<id> value=<v> <ns>``), posted to its ``/write``
(sensorhub with a token, ``Authorization: Token``). Scenarios:

  one client   — one device's year, requests one after the other;
  two clients  — two more devices' years written at the same time by two threads (1,051,200 points);
  backfill     — sensorhub only: the same year as JSON through ``/v3/devices/{id}/backfill`` (the rate
                 to compare with docs/benchmarks.md: the backfill path must keep its rate).

Reported: points/s (wall clock, client side) and server CPU seconds per million points (user + system
time of the server process). VictoriaMetrics buffers writes and flushes them asynchronously; its
numbers are for accepted writes (its CPU is measured after a final flush).

Installs nothing: needs ``influxd`` (Debian ``influxdb``) and ``victoria-metrics`` on the PATH; a peer
that is missing is skipped and said so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "timeseries"))
import _common
import bench as tsbench

tsbench.VENV_BIN = Path(
    sys.executable
).parent  # the interpreter running this script (a worktree has no .venv)

YEAR_POINTS = tsbench.YEAR_POINTS
CHUNK = 5_000
VM_PORT = 18328


def year_lines(device: str, ts_ns: np.ndarray, vals: list[float]) -> list[bytes]:
    return [
        "\n".join(
            f"temperature,device={device} value={vals[i]} {ts_ns[i]}"
            for i in range(a, min(a + CHUNK, YEAR_POINTS))
        ).encode()
        for a in range(0, YEAR_POINTS, CHUNK)
    ]


def start_sensorhub(env: dict[str, str], data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """``sensorhub serve`` without the embedded MQTT broker (not measured here)."""
    p = subprocess.Popen(
        [
            str(tsbench.VENV_BIN / "sensorhub"),
            "serve",
            "--port",
            str(tsbench.SH_PORT),
            "--no-mqtt",
            "--log-level",
            "warning",
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _common.wait_port(tsbench.SH_PORT, timeout=120)
    except RuntimeError:
        raise RuntimeError(f"sensorhub did not start: {log.read_text()[-2000:]}") from None
    return p


def start_vm(tmp: Path) -> subprocess.Popen[bytes] | None:
    if shutil.which("victoria-metrics") is None:
        return None
    return _common.start_victoria_metrics(tmp, VM_PORT)


def run_clients(
    post: object, bodies_per_client: list[list[bytes]], pid: int, finish: object = None
) -> tuple[float, float]:
    """Wall seconds and server CPU seconds to post every client's bodies, clients in parallel threads
    (and ``finish()`` after them, e.g. a flush, inside the measurement)."""
    errors: list[BaseException] = []

    def client(bodies: list[bytes]) -> None:
        try:
            for b in bodies:
                post(b)  # type: ignore[operator]
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(b,)) for b in bodies_per_client]
    t0, c0 = time.perf_counter(), _common.cpu_seconds(pid)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if finish is not None:
        finish()  # type: ignore[operator]
    wall, cpu = time.perf_counter() - t0, _common.cpu_seconds(pid) - c0
    if errors:
        raise errors[0]
    return wall, cpu


def _servers(
    sh_http: httpx.Client,
    sh_proc: subprocess.Popen[bytes],
    ix_proc: subprocess.Popen[bytes] | None,
    vm_proc: subprocess.Popen[bytes] | None,
) -> dict[str, tuple[int, object]]:
    """Per server: its process id and a function posting one line-protocol body to its /write."""

    def sh_post(b: bytes) -> None:
        r = sh_http.post("/write", params={"db": "main"}, content=b)
        assert r.status_code == 204, r.text

    servers: dict[str, tuple[int, object]] = {"sensorhub": (sh_proc.pid, sh_post)}
    if ix_proc is not None:
        ix_http = httpx.Client(base_url=f"http://127.0.0.1:{tsbench.INFLUX_PORT}", timeout=300)
        ix_http.post("/query", params={"q": "CREATE DATABASE bench"}).raise_for_status()

        def ix_post(b: bytes) -> None:
            ix_http.post("/write", params={"db": "bench"}, content=b).raise_for_status()

        servers["influxdb_1.6"] = (ix_proc.pid, ix_post)
    if vm_proc is not None:
        vm_http = httpx.Client(base_url=f"http://127.0.0.1:{VM_PORT}", timeout=300)

        def vm_post(b: bytes) -> None:
            vm_http.post("/write", params={"db": "bench"}, content=b).raise_for_status()

        servers["victoriametrics"] = (vm_proc.pid, vm_post)
    return servers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sh-lp-bench-"))
    env = {**os.environ, "SENSORHUB_DATA_DIR": str(tmp / "sh"), "SENSORHUB_ENV": "development"}
    env["SENSORHUB_RATE_LIMIT_PER_MINUTE"] = "100000000"
    pg_db = _common.scratch_postgres(env, args.pg_admin, "sensorhub_lpbench") if args.postgres else None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        token = tsbench.setup_sensorhub(env, tmp / "sh")
        sh_proc = start_sensorhub(env, tmp / "sh", tmp / "server.log")
        procs.append(sh_proc)
        ix_proc = tsbench.start_influx(tmp) if shutil.which("influxd") else None
        vm_proc = start_vm(tmp)
        procs += [p for p in (ix_proc, vm_proc) if p is not None]
        sh_http = httpx.Client(
            base_url=f"http://127.0.0.1:{tsbench.SH_PORT}",
            headers={"Authorization": f"Token {token}"},
            timeout=300,
        )
        servers = _servers(sh_http, sh_proc, ix_proc, vm_proc)
        rng = np.random.default_rng(1)
        start_us = int(tsbench.YEAR_START.timestamp()) * 1_000_000
        ts_us = start_us + np.arange(YEAR_POINTS, dtype=np.int64) * 60_000_000
        vals = np.round(
            15 + 10 * np.sin(np.arange(YEAR_POINTS) / 1440 * 2 * np.pi) + rng.normal(0, 1, YEAR_POINTS), 3
        )
        vl = vals.tolist()
        dev = [f"urn:ngsi-ld:Device:dev-{i}" for i in range(4)]
        one = [year_lines(dev[0], ts_us * 1000, vl)]
        two = [year_lines(dev[1], ts_us * 1000, vl), year_lines(dev[2], ts_us * 1000, vl)]
        results: dict[str, dict[str, dict[str, float]]] = {"one_client": {}, "two_clients": {}}
        for name, (pid, post) in servers.items():
            for scenario, bodies in (("one_client", one), ("two_clients", two)):
                flush = (
                    (lambda: httpx.get(f"http://127.0.0.1:{VM_PORT}/internal/force_flush", timeout=120))
                    if name == "victoriametrics"
                    else None
                )
                wall, cpu = run_clients(post, bodies, pid, flush)
                n = YEAR_POINTS * len(bodies)
                results[scenario][name] = {
                    "points_per_s": n / wall,
                    "seconds": wall,
                    "server_cpu_s_per_million": cpu / n * 1e6,
                }
                print(scenario, name, results[scenario][name], flush=True)
        # What was written is what is stored: the one-client year reads back in full.
        r = sh_http.get(
            f"/api/timeseries/v2/entities/{dev[0]}/data",
            params={
                "start_time": "2025-01-01T00:00:00Z",
                "end_time": "2026-01-01T00:00:00Z",
                "resolution": 1,
                "aggregation": "count",
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        # The JSON backfill of the same year (the path whose rate docs/benchmarks.md records).
        iso = np.datetime_as_string(ts_us.astype("datetime64[us]"), unit="s", timezone="UTC").tolist()
        bodies = [
            orjson.dumps(
                [
                    {"timestamp": iso[i], "data": {"temperature": vl[i]}}
                    for i in range(a, min(a + CHUNK, YEAR_POINTS))
                ]
            )
            for a in range(0, YEAR_POINTS, CHUNK)
        ]

        def backfill(b: bytes) -> None:
            r = sh_http.post(
                f"/v3/devices/{dev[3]}/backfill", content=b, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 200, r.text

        wall, cpu = run_clients(backfill, [bodies], sh_proc.pid)
        results["backfill_json"] = {
            "sensorhub": {
                "points_per_s": YEAR_POINTS / wall,
                "seconds": wall,
                "server_cpu_s_per_million": cpu / YEAR_POINTS * 1e6,
            }
        }
        print("backend:", "postgresql" if args.postgres else "sqlite")
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
        assert r.status_code == 200 and sum(r.json()["attributes"]["temperature"]) == YEAR_POINTS, r.text
    finally:
        _common.stop(procs)
        _common.drop_scratch_postgres(args.pg_admin, pg_db)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
