"""API keys on real Postgres and Redis: list, expiry, revoke, rotate, through the API and the
CLI; a revoked key is refused at once by another app instance sharing the stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.core.db import Pool
from app.settings import Settings
from tests.integration.test_api import assert_error, new_publisher
from tests.integration.test_cli import run_cli
from tests.support.accounts import app_on, bearer

KEYS = "/api/v1/api-keys"


async def new_key(
    client: httpx.AsyncClient, admin_key: str, publisher_id: int, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/publishers/{publisher_id}/api-keys", json=body, headers=bearer(admin_key)
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def works(client: httpx.AsyncClient, key: str) -> bool:
    response = await client.get("/api/v1/me", headers=bearer(key))
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


async def test_list_shows_prefix_owner_and_times_never_the_secret(
    app_client: httpx.AsyncClient, admin_key: str
) -> None:
    mine = await new_publisher(app_client, admin_key, "Mine")
    other = await new_publisher(app_client, admin_key, "Other")
    key = await new_key(app_client, admin_key, mine, name="laptop")
    other_key = await new_key(app_client, admin_key, other)

    listed = await app_client.get(KEYS, params={"publisher_id": mine}, headers=bearer(admin_key))
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert item["id"] == key["id"]
    assert key["key"].startswith(item["prefix"]) and len(item["prefix"]) == 10
    assert key["key"] not in listed.text
    assert item["role"] == "publisher" and item["publisher_id"] == mine
    assert item["name"] == "laptop" and item["status"] == "active"
    assert item["created_at"] and item["last_used_at"] is None and item["expires_at"] is None

    # A publisher key lists its own keys only; another publisher's answers 404.
    own = await app_client.get(KEYS, headers=bearer(key["key"]))
    assert [k["id"] for k in own.json()["items"]] == [key["id"]]
    assert own.json()["items"][0]["last_used_at"] is not None  # this very call used it
    assert_error(
        await app_client.get(KEYS, params={"publisher_id": other}, headers=bearer(key["key"])),
        404,
        "not_found",
    )
    assert_error(
        await app_client.get(f"{KEYS}/{other_key['id']}", headers=bearer(key["key"])),
        404,
        "not_found",
    )
    every = await app_client.get(KEYS, params={"role": "admin"}, headers=bearer(admin_key))
    assert {k["role"] for k in every.json()["items"]} == {"admin"}


async def test_last_used_is_written_at_most_once_a_minute(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool
) -> None:
    publisher_id = await new_publisher(app_client, admin_key)
    key = await new_key(app_client, admin_key, publisher_id)
    assert await works(app_client, key["key"])
    first = await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key["id"])
    assert first is not None
    for _ in range(3):
        assert await works(app_client, key["key"])
    assert (
        await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key["id"]) == first
    )
    await pool.execute(
        "UPDATE api_keys SET last_used_at = now() - interval '61 seconds' WHERE id = $1",
        key["id"],
    )
    stale = await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key["id"])
    assert await works(app_client, key["key"])
    later = await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key["id"])
    assert later - stale >= timedelta(seconds=60)


async def test_expiry(app_client: httpx.AsyncClient, admin_key: str, pool: Pool) -> None:
    publisher_id = await new_publisher(app_client, admin_key)
    past = await app_client.post(
        f"/api/v1/publishers/{publisher_id}/api-keys",
        json={"expires_at": "2020-01-01T00:00:00Z"},
        headers=bearer(admin_key),
    )
    assert "expires_at" in assert_error(past, 422, "invalid")["message"]

    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    key = await new_key(app_client, admin_key, publisher_id, expires_at=soon)
    assert key["expires_at"] is not None
    assert await works(app_client, key["key"])

    await pool.execute(
        "UPDATE api_keys SET expires_at = '2026-01-01T00:00:00Z' WHERE id = $1", key["id"]
    )
    body = assert_error(
        await app_client.get("/api/v1/me", headers=bearer(key["key"])), 401, "unauthorized"
    )
    assert body["message"] == "this API key expired at 2026-01-01T00:00:00Z"
    got = await app_client.get(f"{KEYS}/{key['id']}", headers=bearer(admin_key))
    assert got.json()["status"] == "expired"


async def test_revoke(app_client: httpx.AsyncClient, admin_key: str) -> None:
    mine = await new_publisher(app_client, admin_key, "Mine")
    other = await new_publisher(app_client, admin_key, "Other")
    key = await new_key(app_client, admin_key, mine)
    spare = await new_key(app_client, admin_key, mine)
    other_key = await new_key(app_client, admin_key, other)

    # A publisher cannot revoke another's key: 404, and the key still works.
    assert_error(
        await app_client.delete(f"{KEYS}/{other_key['id']}", headers=bearer(key["key"])),
        404,
        "not_found",
    )
    assert await works(app_client, other_key["key"])

    # A publisher revokes its own; an admin revokes any; revoking again changes nothing.
    revoked = await app_client.delete(f"{KEYS}/{spare['id']}", headers=bearer(key["key"]))
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_at"]
    assert not await works(app_client, spare["key"])
    by_admin = await app_client.delete(f"{KEYS}/{other_key['id']}", headers=bearer(admin_key))
    assert by_admin.json()["status"] == "revoked"
    again = await app_client.delete(f"{KEYS}/{other_key['id']}", headers=bearer(admin_key))
    assert again.json()["revoked_at"] == by_admin.json()["revoked_at"]
    body = assert_error(
        await app_client.get("/api/v1/me", headers=bearer(other_key["key"])), 401, "unauthorized"
    )
    assert body["message"] == "invalid or revoked API key"
    assert_error(
        await app_client.delete(f"{KEYS}/999999999", headers=bearer(admin_key)), 404, "not_found"
    )

    # Revoked keys are listed only when asked for.
    listed = await app_client.get(KEYS, params={"publisher_id": mine}, headers=bearer(admin_key))
    assert [k["id"] for k in listed.json()["items"]] == [key["id"]]
    listed = await app_client.get(
        KEYS, params={"publisher_id": mine, "include_revoked": "true"}, headers=bearer(admin_key)
    )
    assert [k["id"] for k in listed.json()["items"]] == [key["id"], spare["id"]]


async def test_revocation_reaches_another_instance_at_once(
    settings: Settings, admin_key: str
) -> None:
    async with app_on(settings) as first, app_on(settings) as second:
        publisher_id = await new_publisher(first, admin_key)
        key = await new_key(first, admin_key, publisher_id)
        assert await works(second, key["key"])
        assert await works(second, key["key"])
        revoked = await first.delete(f"{KEYS}/{key['id']}", headers=bearer(admin_key))
        assert revoked.status_code == 200, revoked.text
        assert_error(
            await second.get("/api/v1/me", headers=bearer(key["key"])), 401, "unauthorized"
        )
        assert_error(
            await second.get("/api/v1/links", headers=bearer(key["key"])), 401, "unauthorized"
        )


async def test_rotate_at_once(app_client: httpx.AsyncClient, admin_key: str) -> None:
    publisher_id = await new_publisher(app_client, admin_key)
    old = await new_key(app_client, admin_key, publisher_id, name="server")
    rotated = await app_client.post(
        f"{KEYS}/{old['id']}/rotate", json={}, headers=bearer(old["key"])
    )
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["key"].startswith("ctk_") and new["key"] != old["key"]
    assert new["publisher_id"] == publisher_id and new["role"] == "publisher"
    assert new["replaces"]["status"] == "revoked"
    assert new["replaces"]["replaced_by"] == new["id"]
    assert not await works(app_client, old["key"])
    assert await works(app_client, new["key"])
    got = await app_client.get(f"{KEYS}/{new['id']}", headers=bearer(new["key"]))
    assert got.json()["name"] == "server"

    # A revoked key cannot be rotated; an unknown one is 404; a bad overlap is 422.
    assert_error(
        await app_client.post(f"{KEYS}/{old['id']}/rotate", json={}, headers=bearer(admin_key)),
        409,
        "conflict",
    )
    assert_error(
        await app_client.post(f"{KEYS}/999999999/rotate", json={}, headers=bearer(admin_key)),
        404,
        "not_found",
    )
    assert_error(
        await app_client.post(
            f"{KEYS}/{new['id']}/rotate", json={"overlap_seconds": 3601}, headers=bearer(admin_key)
        ),
        422,
        "invalid",
    )


async def test_rotate_with_overlap(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool
) -> None:
    publisher_id = await new_publisher(app_client, admin_key)
    old = await new_key(app_client, admin_key, publisher_id)
    other = await new_publisher(app_client, admin_key, "Other")
    other_key = await new_key(app_client, admin_key, other)
    assert_error(
        await app_client.post(
            f"{KEYS}/{old['id']}/rotate", json={}, headers=bearer(other_key["key"])
        ),
        404,
        "not_found",
    )

    soon = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    rotated = await app_client.post(
        f"{KEYS}/{old['id']}/rotate",
        json={"overlap_seconds": 300, "expires_at": soon},
        headers=bearer(admin_key),
    )
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["expires_at"] is not None
    replaced = new["replaces"]
    assert replaced["status"] == "active" and replaced["revoked_at"] is None
    ends = datetime.fromisoformat(replaced["expires_at"])
    assert timedelta(seconds=200) < ends - datetime.now(UTC) <= timedelta(seconds=300)
    assert await works(app_client, old["key"]) and await works(app_client, new["key"])

    # Rotated once is enough: the old key cannot be rotated again.
    assert_error(
        await app_client.post(f"{KEYS}/{old['id']}/rotate", json={}, headers=bearer(old["key"])),
        409,
        "conflict",
    )
    await pool.execute(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", old["id"]
    )
    body = assert_error(
        await app_client.get("/api/v1/me", headers=bearer(old["key"])), 401, "unauthorized"
    )
    assert "expired" in body["message"]
    assert await works(app_client, new["key"])


async def test_cli_list_revoke_rotate(database_url: str, pool: Pool) -> None:
    created = run_cli(database_url, "create-publisher", "CLI keys")
    publisher_id = int(created.stdout.split()[1])
    made = run_cli(database_url, "create-api-key", str(publisher_id), "--name", "box")
    assert made.returncode == 0, made.stderr
    key_id = int(made.stdout.split()[2])
    secret = made.stdout.strip().splitlines()[-1]

    listed = run_cli(database_url, "list-api-keys", "--publisher-id", str(publisher_id))
    assert listed.returncode == 0, listed.stderr
    assert f"key {key_id}: {secret[:10]}… publisher {publisher_id}, active (box)" in listed.stdout
    assert secret not in listed.stdout
    assert "last used never" in listed.stdout

    rotated = run_cli(database_url, "rotate-api-key", str(key_id), "--overlap-seconds", "60")
    assert rotated.returncode == 0, rotated.stderr
    assert "still works for 60 s" in rotated.stdout
    new_secret = rotated.stdout.strip().splitlines()[-1]
    assert new_secret.startswith("ctk_") and new_secret != secret
    new_id = int(rotated.stdout.split("new key ")[1].split(",")[0])
    old_row = await pool.fetchrow(
        "SELECT revoked_at, expires_at, replaced_by FROM api_keys WHERE id = $1", key_id
    )
    assert old_row is not None
    assert old_row["revoked_at"] is None and old_row["expires_at"] is not None
    assert old_row["replaced_by"] == new_id

    revoked = run_cli(database_url, "revoke-api-key", str(new_id))
    assert revoked.returncode == 0, revoked.stderr
    assert f"key {new_id} revoked" in revoked.stdout
    assert await pool.fetchval("SELECT revoked_at FROM api_keys WHERE id = $1", new_id)

    hidden = run_cli(database_url, "list-api-keys", "--publisher-id", str(publisher_id))
    assert f"key {new_id}:" not in hidden.stdout
    shown = run_cli(database_url, "list-api-keys", "--publisher-id", str(publisher_id), "--all")
    assert f"key {new_id}:" in shown.stdout and "revoked" in shown.stdout

    again = run_cli(database_url, "rotate-api-key", str(new_id))
    assert again.returncode == 1 and "only an active key" in again.stderr
    missing = run_cli(database_url, "revoke-api-key", "999999999")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    bad = run_cli(database_url, "rotate-api-key", str(key_id), "--overlap-seconds", "9999")
    assert bad.returncode == 2 and "0 to 3600" in bad.stderr


async def test_cli_keys_with_an_expiry(database_url: str, pool: Pool) -> None:
    created = run_cli(database_url, "create-publisher", "CLI expiring keys")
    publisher_id = int(created.stdout.split()[1])
    made = run_cli(
        database_url, "create-api-key", str(publisher_id), "--expires-at", "2099-01-01T00:00:00Z"
    )
    assert made.returncode == 0, made.stderr
    key_id = int(made.stdout.split()[2])
    expiry = await pool.fetchval("SELECT expires_at FROM api_keys WHERE id = $1", key_id)
    assert expiry == datetime(2099, 1, 1, tzinfo=UTC)
    admin = run_cli(database_url, "create-admin-key", "--expires-at", "2099-01-01T01:00:00+01:00")
    assert admin.returncode == 0, admin.stderr
    admin_id = int(admin.stdout.split()[2])
    expiry = await pool.fetchval("SELECT expires_at FROM api_keys WHERE id = $1", admin_id)
    assert expiry == datetime(2099, 1, 1, tzinfo=UTC)
    for when, message in [
        ("2001-01-01T00:00:00Z", "must be in the future"),
        ("2099-01-01T00:00:00", "needs a time zone"),
        ("tomorrow", "not an ISO 8601 time"),
    ]:
        refused = run_cli(database_url, "create-api-key", str(publisher_id), "--expires-at", when)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
