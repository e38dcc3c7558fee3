"""Liveness and readiness."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import ORJSONResponse
from sqlalchemy import text

from sensorhub import __version__, metrics
from sensorhub.api.deps import ctx
from sensorhub.auth.dependencies import Public

router = APIRouter(tags=["health"])


# Prometheus scrapes carry no credential; the endpoint answers allowed addresses only (see sensorhub.metrics).
router.add_api_route(
    "/metrics",
    metrics.metrics_endpoint,
    methods=["GET"],
    dependencies=[Depends(Public())],
    include_in_schema=False,
)

_HEALTHY = orjson.dumps({"status": "ok", "version": __version__})


@router.get("/healthz", dependencies=[Depends(Public())])
async def healthz() -> Response:
    """The process is up."""
    return Response(_HEALTHY, media_type="application/json")


@router.get("/readyz", dependencies=[Depends(Public())])
def readyz(request: Request) -> ORJSONResponse:
    """Ready to serve: the database answers (and every configured dependency, see ``checks``).

    A check may report ``degraded`` (e.g. Redis down: still serving correctly, from the database): the
    overall status says ``degraded`` but the answer stays 200 so the load balancer keeps the worker.
    Only ``error`` (e.g. no database) turns it into 503."""
    c = ctx(request)
    checks: dict[str, Any] = {}
    ok = True
    degraded = False
    try:
        with c.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = {"status": "ok", "dialect": c.db.dialect}
    except Exception as e:
        ok = False
        checks["database"] = {"status": "error", "error": type(e).__name__}
    probes = dict(getattr(request.app.state, "readiness_probes", {}))
    store = getattr(request.app.state, "export_store", None)
    if store is not None and "export_store" not in probes:
        probes["export_store"] = lambda: _export_store_check(store)
    for name, probe in probes.items():
        try:
            checks[name] = probe()
            if checks[name].get("status") == "error":
                ok = False
            elif checks[name].get("status") == "degraded":
                degraded = True
        except Exception as e:
            ok = False
            checks[name] = {"status": "error", "error": type(e).__name__}
    status = ("degraded" if degraded else "ok") if ok else "error"
    return ORJSONResponse({"status": status, "checks": checks}, status_code=200 if ok else 503)


_S3_CHECK_EVERY = 15.0
_s3_checked: dict[tuple[str, str | None], tuple[float, dict[str, Any]]] = {}


def _export_store_check(store: Any) -> dict[str, Any]:
    """The export store answers. Problems are *degraded*, not errors: only exports are affected, so the
    worker stays in the load balancer. S3 is asked at most every 15 s (HeadBucket, 2 s timeouts)."""
    kind = getattr(store, "kind", "unknown")
    if kind == "local":
        root = Path(store.root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return {"status": "degraded", "kind": kind, "error": type(e).__name__}
        if not os.access(root, os.W_OK):
            return {"status": "degraded", "kind": kind, "error": "not writable"}
        return {"status": "ok", "kind": kind}
    if kind == "s3":
        key = (store.bucket, store.endpoint_url)
        now = time.monotonic()
        cached = _s3_checked.get(key)
        if cached is not None and now - cached[0] < _S3_CHECK_EVERY:
            return cached[1]
        try:
            import boto3
            from botocore.config import Config

            cfg = Config(connect_timeout=2, read_timeout=2, retries={"max_attempts": 1})
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
            client = boto3.client("s3", endpoint_url=store.endpoint_url, region_name=region, config=cfg)
            client.head_bucket(Bucket=store.bucket)
            result: dict[str, Any] = {"status": "ok", "kind": kind, "bucket": store.bucket}
        except Exception as e:
            result = {"status": "degraded", "kind": kind, "bucket": store.bucket, "error": type(e).__name__}
        _s3_checked[key] = (now, result)
        return result
    return {"status": "ok", "kind": kind}
