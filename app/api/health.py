"""Liveness, readiness and the metrics page."""

from __future__ import annotations

import asyncio
import os
import shutil

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from app.api.bodies import JsonRoute
from app.api.deps import ResourcesDep
from app.core.metrics import exposition, reader_allowed
from app.core.redis import REDIS_UNAVAILABLE
from app.core.resources import Resources
from app.settings import Settings

router = APIRouter(route_class=JsonRoute, tags=["health"])

CHECK_TIMEOUT_S = 1.0
# Below this much free disk the spool is not counted on to take clicks.
SPOOL_MIN_FREE_BYTES = 64 * 1024 * 1024


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(resources: ResourcesDep) -> JSONResponse:
    """Ready when clicks can be recorded (Redis, or else the spool) and links can be
    resolved (the Redis mirror, or else Postgres). Redis down alone is not a reason to take
    every replica out of the load balancer at once: the spool holds the clicks; Postgres
    down alone neither (links come from the mirror; the API answers 503 meanwhile).

    200 ``{"ready": true, "redis": "ok", "postgres": "ok" | "down: ...", "spool": "ok" |
    "unusable: ..."}``, or 503 with ``"ready": false``. The checks run at the same time,
    each bounded by ``CHECK_TIMEOUT_S``: the answer comes within about a second whatever
    hangs."""
    # Each check is bounded: a store that hangs (dropped packets) must fail the check well
    # within the probe's own timeout, not make every replica's probe time out at once.
    redis, postgres, spool = await asyncio.gather(
        _check_redis(resources), _check_postgres(resources), _check_spool(resources.settings)
    )
    checks = {"redis": redis, "postgres": postgres, "spool": spool}
    redis_ok = redis == "ok"
    ready = (redis_ok or spool == "ok") and (redis_ok or postgres == "ok")
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


async def _check_redis(resources: Resources) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await resources.redis.ping()
    except REDIS_UNAVAILABLE as exc:
        return f"down: {exc!r}"
    return "ok"


async def _check_postgres(resources: Resources) -> str:
    """A real round trip (the pool connects if it holds no connection): the pool having
    been created says nothing, it connects nothing at start."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await resources.pool.fetchval("SELECT 1")
    except Exception as exc:  # any failure means "cannot resolve from Postgres"; never a 500
        return f"down: {exc!r}"
    return "ok"


async def _check_spool(settings: Settings) -> str:
    """In a thread: a disk that hangs (a stalled volume) must not hold the event loop."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            problem = await asyncio.to_thread(spool_problem, settings)
    except TimeoutError:
        return f"unusable: the disk did not answer within {CHECK_TIMEOUT_S:g} s"
    return problem or "ok"


def spool_problem(settings: Settings) -> str | None:
    folder = settings.spool_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"unusable: {exc}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "unusable: not writable"
    if shutil.disk_usage(folder).free < SPOOL_MIN_FREE_BYTES:
        return "unusable: disk almost full"
    return None


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, resources: ResourcesDep) -> Response:
    """Prometheus exposition of this process (of every worker with several), to clients in
    ``CLICKTRACK_METRICS_ALLOW`` only (loopback by default): for anyone else on the public
    port, there is no such page."""
    client = request.client.host if request.client else None
    if not reader_allowed(client, resources.settings.metrics_allow):
        raise HTTPException(status_code=404, detail="Not Found")
    body, content_type = exposition()
    return Response(body, media_type=content_type)
