"""A revoked key is refused at once by every worker: two real ``python -m app.serve``
processes on one database, one of them with two uvicorn workers. Keys are checked against
Postgres on each request (no per-process copy), so the request right after the revocation,
on any worker of any process, answers 401."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import TEST_REDIS_URL
from tests.support.accounts import bearer
from tests.support.processes import start_web

ROUNDS = 24  # each on a fresh connection, so the two workers of the first process both answer


async def statuses(base_url: str, key: str) -> set[int]:
    seen = set()
    for _ in range(ROUNDS):
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
            seen.add((await client.get("/api/v1/me", headers=bearer(key))).status_code)
    return seen


async def test_a_revoked_key_is_refused_by_every_worker_at_once(
    database_url: str, key_prefix: str, admin_key: str, tmp_path: Path
) -> None:
    settings = {
        "CLICKTRACK_DATABASE_URL": database_url,
        "CLICKTRACK_REDIS_URL": TEST_REDIS_URL,
        "CLICKTRACK_KEY_PREFIX": key_prefix,
        "CLICKTRACK_SPOOL_DIR": str(tmp_path / "spool"),
    }
    two_workers, first = await start_web(
        {**settings, "CLICKTRACK_WORKERS": "2"}, tmp_path / "a", tmp_path / "a.log", name="a"
    )
    try:
        one_worker, second = await start_web(settings, tmp_path / "b", tmp_path / "b.log", name="b")
        try:
            async with httpx.AsyncClient(base_url=second, timeout=10.0) as admin:
                made = await admin.post(
                    "/api/v1/publishers", json={"name": "Workers"}, headers=bearer(admin_key)
                )
                assert made.status_code == 201, made.text
                publisher_id = made.json()["id"]
                created = await admin.post(
                    f"/api/v1/publishers/{publisher_id}/api-keys",
                    json={},
                    headers=bearer(admin_key),
                )
                assert created.status_code == 201, created.text
                key, key_id = created.json()["key"], created.json()["id"]
                assert await statuses(first, key) == {200}
                assert await statuses(second, key) == {200}

                revoked = await admin.delete(
                    f"/api/v1/api-keys/{key_id}", headers=bearer(admin_key)
                )
                assert revoked.status_code == 200, revoked.text
                assert revoked.json()["status"] == "revoked"

            assert await statuses(first, key) == {401}
            assert await statuses(second, key) == {401}
        finally:
            await one_worker.stop()
    finally:
        await two_workers.stop()
