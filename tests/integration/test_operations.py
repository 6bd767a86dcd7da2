"""Metrics and health: /metrics parses and moves by the right amounts; readiness follows
what the redirect can really do."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from app.core.db import Pool
from app.flusher.loop import Flusher
from app.links import model as link_model
from app.links import store as link_store
from app.main import create_app
from app.settings import Settings
from tests.conftest import TEST_REDIS_URL
from tests.support.proxy import CuttableProxy

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
async def link(pool: Pool) -> link_model.Link:
    async with pool.acquire() as conn:
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('M') RETURNING id"
        )
        return await link_store.create_link(conn, publisher_id, "https://example.com/m")


async def test_metrics_move_by_the_right_amounts(
    app_client: httpx.AsyncClient, link: link_model.Link, settings: Settings, pool: Pool
) -> None:
    before = await scrape(app_client)
    for _ in range(7):
        response = await app_client.get(f"/e/{link.code}", headers={"user-agent": "curl/8"})
        assert response.status_code == 302
    for _ in range(2):
        assert (await app_client.get("/e/NoSuchCode1")).status_code == 404
    after = await scrape(app_client)

    assert delta(before, after, "clicktrack_redirect_seconds_count", outcome="redirect") == 7
    assert delta(before, after, "clicktrack_redirect_seconds_count", outcome="not_found") == 2
    assert delta(before, after, "clicktrack_clicks_accepted_total") == 7
    assert delta(before, after, "clicktrack_clicks_spooled_total") == 0
    lookups = delta(before, after, "clicktrack_link_cache_total", result="hit") + delta(
        before, after, "clicktrack_link_cache_total", result="miss"
    )
    assert lookups == 9
    assert delta(before, after, "clicktrack_commit_batch_size_sum") == 7
    assert delta(before, after, "clicktrack_commit_seconds_count") >= 1

    # The flusher's own metrics (its process serves them on its own port).
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    rows, bots = (
        value("clicktrack_flusher_rows_total"),
        value("clicktrack_click_flags_total", flag="bot"),
    )
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    stop = asyncio.Event()
    task = asyncio.create_task(Flusher(settings, redis, pool, consumer="m").run(stop))
    try:
        for _ in range(100):
            if value("clicktrack_flusher_rows_total") - rows >= 7:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.2)  # the backlog gauges are refreshed once a second
    finally:
        stop.set()
        await task
        await redis.aclose()
    assert value("clicktrack_flusher_rows_total") - rows == 7
    assert value("clicktrack_click_flags_total", flag="bot") - bots == 7  # curl is a robot
    assert value("clicktrack_stream_pending", shard="0") == 0
    assert value("clicktrack_flusher_lag_seconds", shard="0") == 0


async def test_readiness_follows_redis_and_the_spool(
    settings: Settings, pool: Pool, tmp_path: Path
) -> None:
    proxy = CuttableProxy("127.0.0.1", urlsplit(TEST_REDIS_URL).port or 6379)
    await proxy.start()
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the spool folder should be")
    try:
        for spool_dir, ready_without_redis in [(tmp_path / "spool", True), (blocked, False)]:
            configured = settings.model_copy(
                update={"redis_url": proxy.url(), "spool_dir": spool_dir}
            )
            app = create_app(configured)
            async with (
                LifespanManager(app) as manager,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(manager.app), base_url="http://t"
                ) as client,
            ):
                if ready_without_redis:
                    healthy = await client.get("/readyz")
                    assert healthy.status_code == 200 and healthy.json()["ready"]
                proxy.sever()
                degraded = await client.get("/readyz")
                assert degraded.json()["redis"].startswith("down")
                assert degraded.status_code == (200 if ready_without_redis else 503)
                assert degraded.json()["ready"] is ready_without_redis
                proxy.heal()
                for _ in range(50):
                    healed = await client.get("/readyz")
                    if healed.json()["redis"] == "ok":
                        break
                    await asyncio.sleep(0.1)
                assert healed.json()["redis"] == "ok"
                assert (await client.get("/healthz")).status_code == 200
    finally:
        await proxy.stop()


async def test_metrics_on_the_public_port_answer_loopback_only(settings: Settings) -> None:
    """/metrics sits on the public port next to /e/: only clients in
    CLICKTRACK_METRICS_ALLOW (loopback by default) read it; anyone else finds no such page."""

    async def status(app_settings: Settings, client: str) -> int:
        app = create_app(app_settings)
        transport_of = httpx.ASGITransport
        async with LifespanManager(app) as manager:
            transport = transport_of(app=manager.app, client=(client, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                return (await http.get("/metrics")).status_code

    assert await status(settings, "127.0.0.1") == 200
    assert await status(settings, "::1") == 200
    assert await status(settings, "203.0.113.7") == 404
    assert await status(settings, "::ffff:203.0.113.7") == 404
    scraper = settings.model_copy(update={"metrics_allow": ("203.0.113.0/24",)})
    assert await status(scraper, "203.0.113.7") == 200
    assert await status(scraper, "127.0.0.1") == 404
    nobody = settings.model_copy(update={"metrics_allow": ()})
    assert await status(nobody, "127.0.0.1") == 404


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_metrics_on_a_port_of_their_own(tmp_path: Path) -> None:
    """CLICKTRACK_METRICS_PORT: `python -m app.serve` also serves the metrics on that port,
    bound to CLICKTRACK_METRICS_HOST (127.0.0.1 by default)."""
    app_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "CLICKTRACK_PORT": str(app_port),
        "CLICKTRACK_METRICS_PORT": str(metrics_port),
        "CLICKTRACK_REDIS_URL": TEST_REDIS_URL,
        "CLICKTRACK_SPOOL_DIR": str(tmp_path / "spool"),
    }
    env.pop("CLICKTRACK_METRICS_HOST", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "app.serve"], env=env, cwd=tmp_path, stderr=subprocess.DEVNULL
    )
    try:
        with httpx.Client(timeout=2) as client:
            for _ in range(100):
                try:
                    response = client.get(f"http://127.0.0.1:{metrics_port}/metrics")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                pytest.fail("the metrics port never answered")
        assert response.status_code == 200
        assert "clicktrack_clicks_accepted_total" in response.text
        ss = shutil.which("ss")
        listening = subprocess.run(
            [ss or "true", "-Hltn", f"sport = :{metrics_port}"], capture_output=True, text=True
        )
        if ss and listening.returncode == 0:
            local = [line.split()[3] for line in listening.stdout.splitlines()]
            assert local == [f"127.0.0.1:{metrics_port}"]
    finally:
        process.terminate()
        process.wait(timeout=30)
