"""Wiring only: ``create_app(settings)`` builds the ASGI app.

The redirect (``/e/...``) is a plain ASGI handler dispatched before FastAPI sees the request:
FastAPI's routing and validation would cost more than everything else the redirect does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from app.api import errors, health, links, publishers
from app.db import create_pool
from app.keys import RedisKeys
from app.resources import Resources
from app.settings import Settings


def create_api(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        pool = await create_pool(settings.database_url)
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            yield {"resources": Resources(settings, pool, redis, RedisKeys(settings.key_prefix))}
        finally:
            await redis.aclose()
            await pool.close()

    api = FastAPI(
        title="clicktrack",
        version="0.1.0",
        description="Click tracking and attribution for affiliate programs.",
        lifespan=lifespan,
    )
    errors.install(api)
    api.include_router(health.router)
    api.include_router(publishers.router, prefix="/api/v1")
    api.include_router(links.router, prefix="/api/v1")
    return api


class ClickTrackApp:
    """Sends ``/e/`` requests to the redirect handler, everything else to FastAPI."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api = create_api(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.api(scope, receive, send)


def create_app(settings: Settings | None = None) -> ClickTrackApp:
    return ClickTrackApp(settings or Settings())
