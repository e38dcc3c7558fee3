"""Prometheus metrics: one module every domain increments, one ``/metrics`` route that exposes them.

Names other code may use (a contract)::

    from sensorhub import metrics
    metrics.ingest_points.inc(n)      # sensorhub_ingest_points_total   — points stored by ingest/backfill
    metrics.ingest_duplicates.inc(n)  # sensorhub_ingest_duplicates_total — points skipped as duplicates
    metrics.export_rows.inc(n)        # sensorhub_export_rows_total     — rows written into export files

The request counter/histogram are fed by :class:`RequestMetrics` (from the pure-ASGI edge middleware,
labelled by route *template*, never by raw path, so cardinality stays bounded). Auth failures by reason and auth-cache
lookups are incremented where they happen.

Several worker processes: when ``PROMETHEUS_MULTIPROC_DIR`` is set (before the process starts, to an
empty directory wiped at every service start) prometheus_client's multiprocess mode writes every worker's
values there and ``/metrics`` aggregates them, so one scrape through the load balancer sees the whole host.
Without it every worker reports its own values only.

``/metrics`` (routed in :mod:`sensorhub.api.health`) declares ``Public()`` (no credential: Prometheus does not carry tokens) and answers only
clients whose resolved address is in ``SENSORHUB_METRICS_ALLOW`` (loopback and private networks by
default); the deployment guide also blocks it at the proxy.
"""

from __future__ import annotations

import ipaddress
import os
from collections import Counter as _CollectionsCounter
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as _DEFAULT_REGISTRY
from starlette.types import Scope

from sensorhub.errors import NotFound
from sensorhub.net import client_ip

http_requests = Counter(
    "sensorhub_http_requests_total",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
)
http_duration = Histogram(
    "sensorhub_http_request_duration_seconds",
    "HTTP request duration by method and route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
auth_failures = Counter("sensorhub_auth_failures_total", "Rejected credentials by reason", ["reason"])
auth_cache_lookups = Counter(
    "sensorhub_auth_cache_lookups_total",
    "Auth cache lookups: hit, miss, or bypass (Redis bus not known-healthy: resolved from the database)",
    ["result"],
)
auth_invalidations = Counter(
    "sensorhub_auth_invalidations_total", "Auth cache invalidations by origin (local, bus)", ["origin"]
)
ingest_points = Counter("sensorhub_ingest_points_total", "Measurement points stored by ingest and backfill")
ingest_duplicates = Counter("sensorhub_ingest_duplicates_total", "Ingested points skipped as duplicates")
export_rows = Counter("sensorhub_export_rows_total", "Rows written into export files")
mqtt_stored = Counter("sensorhub_mqtt_messages_stored_total", "MQTT messages stored by the ingest service")
# The read replica (sensorhub.replica), as of each process's last check; "max" over worker processes.
db_replica_lag = Gauge(
    "sensorhub_db_replica_lag_seconds",
    "Replay lag of the read replica at the last check (0: it has replayed all the primary wrote)",
    multiprocess_mode="max",
)
db_replica_in_use = Gauge(
    "sensorhub_db_replica_in_use",
    "1 while read-only transactions use the read replica, 0 while they fall back to the primary",
    multiprocess_mode="min",
)
mqtt_refused = Counter("sensorhub_mqtt_messages_refused_total", "MQTT messages refused (nothing stored)")

# Pre-bound children: the hot path pays one locked add, no label lookup.
CACHE_HIT = auth_cache_lookups.labels("hit")
CACHE_MISS = auth_cache_lookups.labels("miss")
CACHE_BYPASS = auth_cache_lookups.labels("bypass")

UNMATCHED = "<unmatched>"


class FailureCounter(_CollectionsCounter[str]):
    """``collections.Counter`` of auth failures by reason that also feeds ``sensorhub_auth_failures_total``
    (the Authenticator does ``failures[reason] += 1``)."""

    def __setitem__(self, key: str, value: int) -> None:
        delta = value - self.get(key, 0)
        super().__setitem__(key, value)
        if delta > 0:
            auth_failures.labels(key).inc(delta)


class RequestMetrics:
    """Counts requests by route template and status (fed by the edge middleware,
    :class:`sensorhub.api.middleware.EdgeMiddleware`, once per HTTP request)."""

    def __init__(self) -> None:
        # Bound children per label set: ``labels()`` costs more than the increment itself. Bounded by
        # the route table x methods x statuses.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    def record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED
        method = scope.get("method", "")
        counter = self._counters.get((method, template, status))
        if counter is None:
            counter = self._counters[(method, template, status)] = http_requests.labels(
                method, template, str(status)
            )
        timer = self._timers.get((method, template))
        if timer is None:
            timer = self._timers[(method, template)] = http_duration.labels(method, template)
        counter.inc()
        timer.observe(elapsed)


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call,unused-ignore]
        return reg
    return _DEFAULT_REGISTRY


def _allowed(request: Request, allow: tuple[str, ...], proxies: tuple[str, ...]) -> bool:
    ip = client_ip(request, proxies)
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(n, strict=False) for n in allow)


def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format; only for clients in ``SENSORHUB_METRICS_ALLOW``."""
    settings = request.app.state.ctx.settings
    if not _allowed(request, tuple(settings.metrics_allow), tuple(settings.trusted_proxies)):
        # Same answer as an unknown path: no hint that there is something here.
        raise NotFound("Not Found")
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)


def mark_process_dead(pid: int) -> None:
    """For gunicorn's ``child_exit`` hook in multiprocess mode (drops the dead worker's live gauges)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call,unused-ignore]


__all__ = [
    "RequestMetrics",
    "auth_cache_lookups",
    "auth_failures",
    "db_replica_in_use",
    "db_replica_lag",
    "export_rows",
    "http_duration",
    "http_requests",
    "ingest_duplicates",
    "ingest_points",
    "metrics_endpoint",
    "mqtt_refused",
    "mqtt_stored",
]
