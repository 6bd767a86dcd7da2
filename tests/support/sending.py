"""The sender in the test's own event loop (``app.sender.loop.Sender``), against real
Postgres and a real receiver on loopback; and waiting for deliveries to settle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from app.core.db import Pool
from app.postbacks.destinations import DestinationRules
from app.sender.http import HttpSender
from app.sender.loop import Sender
from app.settings import Settings

# Loopback is where the test receivers listen: allowed explicitly, as an operator would.
LOOPBACK_ALLOWED: dict[str, Any] = {"postback_allow_networks": ("127.0.0.0/8",)}
FAST: dict[str, Any] = {
    "postback_timeout_ms": 1000,
    "postback_connect_timeout_ms": 500,
    "postback_retry_first_s": 0.05,
    "postback_retry_max_s": 0.2,
    "sender_metrics_port": 0,
}


def sender_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={**LOOPBACK_ALLOWED, **FAST, **changes})


@asynccontextmanager
async def running_sender(settings: Settings, pool: Pool) -> AsyncIterator[Sender]:
    http = HttpSender(
        DestinationRules(settings.postback_allow_private, settings.postback_allow_networks),
        connect_timeout_s=settings.postback_connect_timeout_ms / 1000,
        timeout_s=settings.postback_timeout_ms / 1000,
        per_endpoint=settings.postback_endpoint_concurrency,
    )
    sender = Sender(settings, pool, http)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        yield sender
    finally:
        stop.set()
        await task
        await http.aclose()


async def statuses(pool: Pool, endpoint_id: int) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT status, count(*) AS n FROM postback_deliveries WHERE endpoint_id = $1"
        " GROUP BY status",
        endpoint_id,
    )
    return {r["status"]: r["n"] for r in rows}


async def settled(pool: Pool, endpoint_id: int, within: float) -> dict[str, int]:
    """Until no delivery of the endpoint is pending; its counts by status."""
    deadline = time.monotonic() + within
    while True:
        found = await statuses(pool, endpoint_id)
        if not found.get("pending"):
            return found
        assert time.monotonic() < deadline, f"still pending: {found}"
        await asyncio.sleep(0.05)
