"""The locustfile runs (so it never rots): a few seconds of headless locust against a real
``python -m app.serve``, every request answered as the locustfile expects."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from pathlib import Path

from app.accounts.apikeys import Role, create_key
from app.accounts.publishers import create_publisher
from app.core.db import Pool
from app.links import store as link_store
from app.settings import Settings
from tests.support.processes import PROJECT_ROOT, start_web

LOCUSTFILE = PROJECT_ROOT / "loadtests" / "locustfile.py"
RUN_TIME_S = 5


def web_env(settings: Settings) -> dict[str, str]:
    return {
        "CLICKTRACK_REDIS_URL": settings.redis_url,
        "CLICKTRACK_DATABASE_URL": settings.database_url,
        "CLICKTRACK_KEY_PREFIX": settings.key_prefix,
        "CLICKTRACK_SPOOL_DIR": str(settings.spool_dir),
        "CLICKTRACK_COOKIE_SECURE": "false",
        "CLICKTRACK_WORKERS": "1",
    }


async def create_data(pool: Pool) -> str:
    """A publisher, its API key and links, as the locustfile's data file (JSON)."""
    async with pool.acquire() as conn:
        publisher = await create_publisher(conn, "locust smoke")
        _, key = await create_key(conn, Role.publisher, publisher.id, "locust smoke")
        codes = [
            (
                await link_store.create_link(conn, publisher.id, f"https://shop.example.com/i/{n}")
            ).code
            for n in range(40)
        ]
    return json.dumps({"codes": codes, "api_key": key})


def aggregated(stats_csv: Path) -> dict[str, dict[str, str]]:
    with stats_csv.open(newline="") as file:
        return {row["Name"]: row for row in csv.DictReader(file)}


async def test_locustfile_smoke_run(settings: Settings, pool: Pool, tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    await asyncio.to_thread(data.write_text, await create_data(pool))
    web, base_url = await start_web(web_env(settings), tmp_path / "web", tmp_path / "web.log")
    try:
        locust = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--users", "10", "--spawn-rate", "10", "--run-time", f"{RUN_TIME_S}s",
            "--host", base_url, "--data-file", str(data), "--p95-ms", "2000",
            "--csv", str(tmp_path / "smoke"), "--only-summary", "--loglevel", "WARNING",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(locust.communicate(), RUN_TIME_S + 40)
    finally:
        await web.stop()
    text = output.decode(errors="replace")
    stats = aggregated(tmp_path / "smoke_stats.csv")
    total = stats["Aggregated"]
    assert int(total["Request Count"]) > 0, text
    assert int(total["Failure Count"]) == 0, text
    assert int(stats["GET /e/[code]"]["Request Count"]) > 0
    assert sum(int(row["Request Count"]) for name, row in stats.items() if "/api/v1/" in name)
    assert locust.returncode == 0, text
