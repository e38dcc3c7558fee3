"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import ORJSONResponse
from sqlalchemy import text

from sensorhub import __version__
from sensorhub.api.deps import ctx
from sensorhub.auth.dependencies import Public

router = APIRouter(tags=["health"])


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
    for name, probe in getattr(request.app.state, "readiness_probes", {}).items():
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
