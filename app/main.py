"""Wiring only: ``create_app(settings)`` builds the ASGI app.

The redirect (``/e/...``) is a plain ASGI handler dispatched before FastAPI sees the request:
FastAPI's routing and validation would cost more than everything else the redirect does.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from app.api import apikeys as api_keys
from app.api import audit as api_audit
from app.api import docs as api_docs
from app.api import endpoints as postback_endpoints
from app.api import errors, health, links, money, orders, plans, postback, publishers, withdrawals
from app.api import merchants as api_merchants
from app.api.reports import income as income_reports
from app.api.reports import orders as order_reports
from app.api.reports import overview as overview_reports
from app.api.reports import traffic as traffic_reports
from app.clicks.spool import Spool
from app.core.db import Pool, create_pool
from app.core.keys import RedisKeys
from app.core.limits import RequestLimits
from app.core.metrics import flush_buffered
from app.core.redis import create_redis
from app.core.resources import Resources
from app.dashboard import routes as dashboard
from app.edge.commit import ClickWriter
from app.edge.linkcache import LinkCache
from app.edge.privacy import IpMasker
from app.edge.quality import enabled_flags
from app.edge.redirect import PREFIX, Redirect
from app.edge.session import SessionCookie
from app.settings import Settings


def build_redirect(
    settings: Settings, resources: Resources, writer_redis: aioredis.Redis
) -> Redirect:
    cache = LinkCache(
        resources.redis,
        resources.pool,
        resources.keys,
        click_id_param=settings.click_id_param,
        size=settings.link_cache_size,
        ttl_s=settings.link_cache_ttl_s,
        negative_ttl_s=settings.link_negative_ttl_s,
        redis_timeout_s=settings.redis_timeout_ms / 1000,
        load_timeout_s=settings.link_load_timeout_ms / 1000,
        load_concurrency=settings.link_load_concurrency,
        legacy_mirror=settings.link_mirror_legacy_writes,
    )
    writer = ClickWriter(
        writer_redis,
        resources.keys,
        Spool(
            settings.spool_dir,
            fsync=settings.spool_fsync,
            max_file_bytes=settings.spool_file_max_bytes,
        ),
        timeout_s=settings.redis_timeout_ms / 1000,
        shards=settings.stream_shards,
        min_replicas=settings.redis_min_replicas,
        replica_timeout_s=settings.redis_replica_timeout_ms / 1000,
    )
    session = SessionCookie(
        settings.cookie_secret.get_secret_value().encode(),
        name=settings.cookie_name,
        secure=settings.cookie_secure,
        domain=settings.cookie_domain,
        max_age=settings.cookie_max_age,
    )
    secret = settings.cookie_secret.get_secret_value()
    if settings.ip_hash_secret is not None:
        secret = settings.ip_hash_secret.get_secret_value()
    return Redirect(
        cache,
        writer,
        session,
        mask_ip=IpMasker(settings.ip_mode, secret.encode()),
        enabled_flags=enabled_flags(settings),
        shards=settings.stream_shards,
        country_header=settings.country_header,
        period_tz=settings.period_tz,
    )


async def _flush_metrics_every_second() -> None:
    while True:
        await asyncio.sleep(1.0)
        flush_buffered()


async def open_pool(settings: Settings) -> Pool:
    """The web app's Postgres pool. It connects nothing at start (``min_size=0``): with
    Postgres down the app still starts and serves links from the Redis mirror. Requests that
    need Postgres connect then, each wait bounded (``CLICKTRACK_DATABASE_TIMEOUT_MS``,
    ``CLICKTRACK_DATABASE_COMMAND_TIMEOUT_MS``), and answer 503 past the bounds
    (``app/api/errors.py``) instead of queueing behind the pool."""
    return await create_pool(
        settings.database_url,
        min_size=0,
        connect_timeout_s=settings.database_timeout_ms / 1000,
        acquire_timeout_s=settings.database_timeout_ms / 1000,
        command_timeout_s=settings.database_command_timeout_ms / 1000,
    )


def create_api(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        pool = await open_pool(settings)
        redis = create_redis(settings, "web")
        # Clicks get their own connection: a slow API call never queues in front of a batch.
        writer_redis = create_redis(settings, "click_writer")
        resources = Resources(settings, pool, redis, RedisKeys(settings.key_prefix))
        redirect = build_redirect(settings, resources, writer_redis)
        redirect.writer.start()
        stop_following = asyncio.Event()
        follower = asyncio.create_task(redirect.links.follow_changes(stop_following))
        metrics_flusher = asyncio.create_task(_flush_metrics_every_second())
        # Everything allocated so far lives as long as the process: keep the cyclic garbage
        # collector from walking it again. A full collection over it takes ~40 ms, which
        # every request in flight would wait out (it set the redirect's p99).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 50, 50)
        try:
            yield {"resources": resources, "redirect": redirect}
        finally:
            # Requests have finished (the server drains them first): write what is buffered.
            await redirect.writer.close()
            stop_following.set()
            metrics_flusher.cancel()
            await asyncio.gather(follower, metrics_flusher, return_exceptions=True)
            flush_buffered()
            await writer_redis.aclose()
            await redis.aclose()
            await pool.close()

    api = FastAPI(
        title="clicktrack",
        version="0.1.0",
        description="Click tracking and attribution for affiliate programs.",
        lifespan=lifespan,
        docs_url=None,  # served from local files instead (app/api/docs.py)
        redoc_url=None,
    )
    errors.install(api)
    api_docs.install(api)
    api.include_router(health.router)
    api.include_router(publishers.router, prefix="/api/v1")
    api.include_router(api_keys.router, prefix="/api/v1")
    api.include_router(links.router, prefix="/api/v1")
    api.include_router(postback.router, prefix="/api/v1")
    api.include_router(orders.router, prefix="/api/v1")
    api.include_router(money.router, prefix="/api/v1")
    api.include_router(plans.router, prefix="/api/v1")
    api.include_router(withdrawals.router, prefix="/api/v1")
    api.include_router(api_merchants.router, prefix="/api/v1")
    api.include_router(api_audit.router, prefix="/api/v1")
    api.include_router(postback_endpoints.router, prefix="/api/v1")
    api.include_router(traffic_reports.router, prefix="/api/v1")
    api.include_router(order_reports.router, prefix="/api/v1")
    api.include_router(income_reports.router, prefix="/api/v1")
    api.include_router(overview_reports.router, prefix="/api/v1")
    api.include_router(dashboard.router)
    return api


class ClickTrackApp:
    """Sends ``/e/`` requests to the redirect handler, everything else to FastAPI."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api = create_api(settings)
        self.limits = RequestLimits(
            max_query_bytes=settings.max_query_bytes, max_body_bytes=settings.max_body_bytes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
        elif scope["path"].startswith(PREFIX):
            # The redirect reads no body: only its query string is bounded (checked inline,
            # not in a coroutine: this is every click).
            if len(scope["query_string"]) <= self.limits.max_query_bytes:
                redirect: Redirect = scope["state"]["redirect"]
                await redirect(scope, receive, send)
            else:
                await self.limits.admit_query(scope, send)  # answers 414
        else:
            admitted = await self.limits.admit(scope, receive, send)
            if admitted is not None:  # else answered 414 or 413
                await self.api(scope, admitted, send)


def create_app(settings: Settings | None = None) -> ClickTrackApp:
    return ClickTrackApp(settings or Settings())
