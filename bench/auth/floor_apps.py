"""The framework floor for ``bench_request_cost.py``: the smallest apps a user could compare with.

- ``starlette_app``: one Starlette route answering ``{"hello": "world"}`` as JSON;
- ``fastapi_app``: the same with FastAPI (one ``@app.get``, a dict answer rendered by FastAPI).

Served by uvicorn exactly as sensorhub is (one worker, access log at info).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def _hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"})


starlette_app = Starlette(routes=[Route("/hello", _hello)])

fastapi_app = FastAPI()


@fastapi_app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}
