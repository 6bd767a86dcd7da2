"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from app.api.deps import ResourcesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(resources: ResourcesDep) -> JSONResponse:
    """Ready when Redis answers and links can be resolved from Postgres."""
    checks: dict[str, str] = {}
    try:
        await resources.redis.ping()
        checks["redis"] = "ok"
    except (RedisError, OSError) as exc:
        checks["redis"] = f"down: {exc}"
    try:
        await resources.pool.fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:  # any failure means not ready; never a 500 here
        checks["postgres"] = f"down: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)
