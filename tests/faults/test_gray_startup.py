"""Starting with a store down: a replica restarted, or added by an autoscaler, during an outage
must not crash-loop. The same harness as ``test_scenarios.py`` (real Redis, Postgres, web app
and flushers; the load client; the count), one scenario:

14. The web app started while Postgres is down: it becomes ready, serves the links the Redis
    mirror holds, and its API answers 503 (with ``Retry-After``) until Postgres is back, then
    200, without a restart. Redirects lose nothing and never answer 5xx.

docs/reliability.md describes it and holds its figures.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from app.accounts.apikeys import Role, create_key
from tests.faults.harness import Faults, Scenario

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

# What "the API answers quickly" means with Postgres refusing connections: the request does
# not wait for anything; the rest is a busy two-core machine.
API_503_BOUND_S = 2.0


@dataclass(frozen=True)
class Answer:
    status: int
    latency_s: float
    retry_after: str | None
    body: str


async def api_get(base_url: str, path: str, key: str) -> Answer:
    async with httpx.AsyncClient(timeout=30.0) as client:
        started = time.monotonic()
        response = await client.get(f"{base_url}{path}", headers={"Authorization": f"Bearer {key}"})
        took = time.monotonic() - started
    return Answer(response.status_code, took, response.headers.get("retry-after"), response.text)


async def admin_key(faults: Faults) -> str:
    conn = await asyncpg.connect(faults.postgres.url)
    try:
        _, key = await create_key(conn, Role.admin, None, "faults")
    finally:
        await conn.close()
    return key


async def mirrored(sc: Scenario) -> bool:
    async with sc.redis() as client:
        return bool(await client.exists(sc.keys.link(sc.code)))


async def api_back(base_url: str, path: str, key: str, within: float) -> float:
    """Until the API answers 200: how long that took. Anything but 200 or 503 fails."""
    started = time.monotonic()
    while True:
        answer = await api_get(base_url, path, key)
        if answer.status == 200:
            return time.monotonic() - started
        assert answer.status == 503, f"{answer.status} {answer.body[:200]}"
        assert time.monotonic() - started < within, f"the API still answers 503: {answer.body}"
        await asyncio.sleep(0.2)


async def test_14_web_started_while_postgres_is_down(faults: Faults) -> None:
    name = "14. web started while Postgres down: ready, mirrored links; API 503"
    async with faults.scenario(name) as sc:
        key = await admin_key(faults)
        path = f"/api/v1/links/{sc.code}"
        await asyncio.gather(sc.start_web(), sc.start_flusher("f1"))
        async with sc.load():
            await sc.warmup()  # web resolves the link once: the mirror now holds it
            assert await mirrored(sc), "the link should be in the Redis mirror"
            await asyncio.to_thread(faults.postgres.stop)
            sc.mark("postgres stopped")
            started = time.monotonic()
            await sc.start_web(name="web2", serve=False)
            ready = await sc.wait_ready("web2")
            ready_s = time.monotonic() - started
            assert ready["postgres"].startswith("down"), ready
            sc.base_url = sc.web_urls["web2"]  # the balancer adds the new replica
            sc.mark("load on web2")
            await sc.outage()
            down = await api_get(sc.base_url, path, key)
            assert down.status == 503, f"{down.status} {down.body[:200]}"
            assert down.retry_after is not None and int(down.retry_after) > 0
            assert down.latency_s < API_503_BOUND_S, f"API 503 took {down.latency_s:.2f}s"
            await asyncio.to_thread(faults.postgres.start)
            sc.mark("postgres started")
            back_s = await api_back(sc.base_url, path, key, within=30.0)
            sc.note(
                f"web2 ready {ready_s:.1f}s after its start (Postgres down); "
                f"API 503 in {down.latency_s * 1000:.0f} ms, Retry-After {down.retry_after}; "
                f"API 200 {back_s:.1f}s after Postgres started"
            )
            await sc.tail()
        row = await sc.check()
    row.assert_exactly_once()
