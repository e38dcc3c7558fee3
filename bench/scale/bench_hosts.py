"""Scale out across hosts: two API "hosts" (Linux network namespaces) on one PostgreSQL database.

    sudo .venv/bin/python bench/scale/bench_hosts.py [--seconds 8]

Needs root (``ip netns add``) and wrk. One run, reusing ``bench_scale.py``'s functions: a scratch
database seeded as there (through 127.0.0.1:5432), then two network namespaces, each with a veth pair to
the root namespace (``10.201.1.1/24 <-> 10.201.1.2/24`` and ``10.201.2.1/24 <-> 10.201.2.2/24``) and its own
``lo``. In each runs one server with one worker process (``bench_scale.serve`` inside ``ip netns exec``),
listening on its namespace's address and connecting to the same database through PostgreSQL's Unix
socket (``/var/run/postgresql``: the file system is shared across network namespaces, 127.0.0.1 is not),
both with the same ``SENSORHUB_SECRET_KEY``. Driven from the root namespace by ``wrk -t1 -c32`` (as
``bench_scale.py``): first host 1 alone, then both hosts at once (one wrk per host), on the downsampled
read and on the backfill route (each wrk writing a time range of its own). Per route: requests/s, the
ratio of two hosts to one, and CPU per request of the API (both servers), PostgreSQL and wrk.
Namespaces and servers are removed in a ``finally`` (also on Ctrl-C and SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/scale/, for bench_scale
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for _common
import _common
import bench_scale as scale

HOSTS = [("sh-bench-h1", "10.201.1"), ("sh-bench-h2", "10.201.2")]
SOCKET_DIR = "/var/run/postgresql"
HOST_OFFSET = timedelta(hours=3)  # host 2 writes 3 hours after host 1: no duplicate points


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def make_namespaces() -> None:
    """Each namespace with ``lo`` up and a veth pair to the root namespace (``NET.1`` outside, ``NET.2``
    inside)."""
    for i, (ns, net) in enumerate(HOSTS, 1):
        outer, inner = f"shb{i}", f"shb{i}p"
        ip("netns", "add", ns)
        ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        ip("link", "set", inner, "netns", ns)
        ip("addr", "add", f"{net}.1/24", "dev", outer)
        ip("link", "set", outer, "up")
        ip("-n", ns, "addr", "add", f"{net}.2/24", "dev", inner)
        ip("-n", ns, "link", "set", inner, "up")
        ip("-n", ns, "link", "set", "lo", "up")


def remove_namespaces() -> None:
    """Deleting a namespace deletes its end of the veth pair, and with it the root namespace's end."""
    for i, (ns, _net) in enumerate(HOSTS, 1):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", f"shb{i}"], capture_output=True)


def parallel_wrk(
    jobs: list[tuple[str, Path | None, str]], seconds: int, token: str
) -> list[tuple[int, float]]:
    """One ``bench_scale.wrk`` per (url, script, first) at once; their (requests, wall seconds)."""
    out: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int, url: str, script: Path | None, first: str) -> None:
        try:
            out[i] = scale.wrk(url, seconds, token, script, first)
        except BaseException as e:  # re-raised below, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, *j)) for i, j in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def measure(
    servers: list[tuple[subprocess.Popen[bytes], str]],
    token: str,
    seconds: int,
    run: int,
    database: str,
    pg: str,
) -> dict[str, dict[str, float]]:
    """The read and the backfill route on ``servers`` (process, base URL) at once, one wrk each."""
    probes = [scale.Probe(p.pid, pg, database) for p, _base in servers]
    host_routes = [scale.routes(base, token) for _p, base in servers]
    out: dict[str, dict[str, float]] = {}
    for r in (0, 2):  # the downsampled read and the backfill (bench_scale.routes)
        label, _url, script, points = host_routes[0][r]
        first = scale.DAY0 + timedelta(days=1, hours=6 * run)
        jobs = [
            (routes[r][1], script, str(int((first + h * HOST_OFFSET).timestamp())))
            for h, routes in enumerate(host_routes)
        ]
        for u, s, f in jobs:  # warm-up, each host's own (bench_scale.wrk's "w": 3 days later)
            scale.wrk(u, 2, token, s, f, "w")
        for p in probes:
            p.start()
        results = parallel_wrk(jobs, seconds, token)
        cpus = [p.stop() for p in probes]
        n = sum(x[0] for x in results)
        wall = max(x[1] for x in results)
        # Each probe counts all the database's backends, wrk (children of this process) and the machine:
        # those from the first probe; the API from each host's own.
        api = sum(c["api_cpu_s"] for c in cpus)
        out[label] = {
            "requests_per_s": sum(x[0] / x[1] for x in results),
            "points_per_s": sum(x[0] / x[1] for x in results) * points,
            "api_cpu_us_per_req": api / n * 1e6,
            "db_cpu_us_per_req": cpus[0]["db_cpu_s"] / n * 1e6,
            "wrk_cpu_us_per_req": cpus[0]["client_cpu_s"] / n * 1e6,
            "cores_used": (api + cpus[0]["db_cpu_s"] + cpus[0]["client_cpu_s"]) / wall,
            "machine_busy": cpus[0]["machine_busy"],
            "load_average": os.getloadavg()[0],
        }
        print(
            len(servers), label, {k: round(v, 2) for k, v in out[label].items()}, file=sys.stderr, flush=True
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=8, help="length of each measured wrk run")
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk")
    if os.geteuid() != 0:
        sys.exit("network namespaces need root (ip netns add)")
    # Ctrl-C (even when started with SIGINT ignored, as a background job) and SIGTERM: the finally runs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    tmp = Path(tempfile.mkdtemp(prefix="sh-hosts-bench-"))
    env = {**os.environ, "SENSORHUB_DATA_DIR": str(tmp / "sh"), "SENSORHUB_ENV": "development"}
    env |= {"SENSORHUB_RATE_LIMIT_PER_MINUTE": "100000000", "SENSORHUB_EMBEDDED_WORKER": "0"}
    load0 = os.getloadavg()[0]
    database = None
    servers: list[subprocess.Popen[bytes]] = []
    try:
        database = _common.scratch_postgres(env, args.pg_admin, "sensorhub_hosts")
        token = scale.seed(env, tmp)
        # Inside a namespace 127.0.0.1 is its own lo: the database through its Unix socket instead.
        ns_env = {
            **env,
            "SENSORHUB_DATABASE_URL": f"postgresql+psycopg://postgres@/{database}?host={SOCKET_DIR}",
        }
        remove_namespaces()  # left over from a run killed with SIGKILL
        make_namespaces()
        port = _common.free_port()
        hosts = []
        for ns, net in HOSTS:
            log = tmp / f"server-{ns}.log"
            p = scale.serve({**ns_env, "SENSORHUB_DATA_DIR": str(tmp / ns)}, port, 1, log, f"{net}.2", ns)
            servers.append(p)
            base = f"http://{net}.2:{port}"
            try:
                _common.wait_http(base + "/healthz", timeout=600)
            except SystemExit:
                sys.exit(f"the server in {ns} did not come up:\n{log.read_text()[-3000:]}")
            hosts.append((p, base))
        results = {
            n: measure(hosts[:n], token, args.seconds, run, database, args.pg_admin)
            for run, n in enumerate((1, 2))
        }
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
        report(results, load0)
    finally:
        _common.stop(servers)
        remove_namespaces()
        _common.drop_scratch_postgres(args.pg_admin, database)
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: dict[int, dict[str, dict[str, float]]], load0: float) -> None:
    print(f"\nload average before: {load0:.2f}, after: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(
        "\n| route | hosts (1 worker each) | requests/s | points/s | ratio 2 hosts / 1 host | API CPU µs/req | "
        "PostgreSQL CPU µs/req | wrk CPU µs/req | cores used | machine busy | load avg |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label in results[1]:
        for h, r in results.items():
            x = r[label]
            print(
                f"| {label} | {h} | {x['requests_per_s']:,.0f} | {x['points_per_s']:,.0f} | "
                f"{x['requests_per_s'] / results[1][label]['requests_per_s']:.2f} | "
                f"{x['api_cpu_us_per_req']:,.0f} | {x['db_cpu_us_per_req']:,.0f} | {x['wrk_cpu_us_per_req']:,.0f} | "
                f"{x['cores_used']:.2f} | {x['machine_busy'] * 100:.0f}% | {x['load_average']:.1f} |"
            )


if __name__ == "__main__":
    main()
