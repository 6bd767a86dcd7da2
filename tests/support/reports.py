"""Helpers for report tests: a database of their own, clicks sent through the real flusher.

Report tests count everything a publisher has, so they cannot share the session's database
with tests that write clicks under arbitrary publisher and link ids, or straight into the
clicks table (bypassing the rollups)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from app.clicks import stream
from app.clicks.record import Click, encode
from app.core.db import Pool, create_pool
from app.core.keys import RedisKeys
from app.flusher.loop import Flusher
from app.settings import Settings
from tests.conftest import migrated_database
from tests.support.orders import uuid7_at

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def own_database() -> AbstractAsyncContextManager[str]:
    """A migrated database of its own; dropped afterwards."""
    return migrated_database("clicktrack_reports")


@asynccontextmanager
async def own_pool(url: str) -> AsyncIterator[Pool]:
    pool = await create_pool(url, max_size=6)
    try:
        yield pool
    finally:
        await pool.close()


def quiet(settings: Settings, database_url: str) -> Settings:
    """Settings on ``database_url`` under which the flusher adds no quality flag of its own:
    the scripted flags are the only ones."""
    return settings.model_copy(
        update={
            "database_url": database_url,
            "flag_bots": False,
            "duplicate_window_s": 0,
            "ip_clicks_per_minute": 0,
        }
    )


def click(
    when: datetime,
    link_id: int,
    publisher_id: int,
    session: str,
    *,
    af: str | None = None,
    cn: str | None = None,
    cv: str | None = None,
    dp: str | None = None,
    flags: int = 0,
    code: str = "report",
) -> Click:
    return Click(
        click_id=str(uuid7_at(when)),
        ts_us=(when - EPOCH) // _MICROSECOND,
        link_id=link_id,
        code=code,
        publisher_id=publisher_id,
        af=af,
        cn=cn,
        cv=cv,
        dp=dp,
        session_id=session,
        session_new=False,
        ip="203.0.113.9",
        user_agent="Mozilla/5.0 (X11; Linux x86_64)",
        referer=None,
        accept_language=None,
        method="GET",
        flags=flags,
    )


async def flush(
    settings: Settings, redis: aioredis.Redis, pool: Pool, clicks: Sequence[Click]
) -> int:
    """Send clicks through the stream and the flusher, as the redirect would; return the rows
    the flusher wrote."""
    keys = RedisKeys(settings.key_prefix)
    await stream.add_many(redis, keys, (encode(c) for c in clicks))
    flusher = Flusher(settings, redis, pool, consumer=f"reports-{uuid.uuid4().hex[:6]}")
    while await flusher.run_once():
        pass
    return flusher.stats.written
