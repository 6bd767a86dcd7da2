"""Merchants administered through the API and the CLI, on real Postgres: disabling refuses
their postbacks (orders already stored stay), enabling accepts them again; rotating the
postback secret with an overlap accepts both secrets until the overlap ends, without one
only the new secret; publisher keys get 403; bad input gets a 4xx or a non-zero exit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.core.db import Pool
from tests.integration.test_api import assert_error, bearer, new_publisher, new_publisher_key
from tests.integration.test_cli import run_cli
from tests.support.orders import order_body, signed

MERCHANTS = "/api/v1/merchants"
POSTBACK = "/api/v1/postback"


async def post_order(
    client: httpx.AsyncClient, merchant_id: int, secret: str, ref: str | None = None
) -> httpx.Response:
    """A postback of a new order (its click unknown: stored unattributed) signed with
    ``secret``."""
    placed = datetime.now(UTC) - timedelta(hours=1)
    body = order_body(ref or f"O-{uuid.uuid4().hex[:10]}", "no-such-click", placed, "10.00")
    return await client.post(POSTBACK, content=body, headers=signed(merchant_id, secret, body))


async def create(client: httpx.AsyncClient, admin_key: str, **body: Any) -> dict[str, Any]:
    body.setdefault("name", f"Shop {uuid.uuid4().hex[:10]}")
    response = await client.post(MERCHANTS, json=body, headers=bearer(admin_key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def listed(client: httpx.AsyncClient, admin_key: str, merchant_id: int) -> dict[str, Any]:
    response = await client.get(MERCHANTS, headers=bearer(admin_key))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = next(m for m in response.json()["items"] if m["id"] == merchant_id)
    return found


async def test_create_lists_without_the_secret(
    app_client: httpx.AsyncClient, admin_key: str
) -> None:
    created = await create(app_client, admin_key, hosts=["Shop.Example.com", "*.example.net"])
    assert created["secret"].startswith("ctm_")
    assert created["hosts"] == ["shop.example.com", "*.example.net"]
    assert created["disabled_at"] is None and created["old_secret_accepted"] is False
    shown = await listed(app_client, admin_key, created["id"])
    assert "secret" not in shown
    assert (
        created["secret"] not in (await app_client.get(MERCHANTS, headers=bearer(admin_key))).text
    )
    assert (await post_order(app_client, created["id"], created["secret"])).status_code == 200


async def test_disable_refuses_postbacks_and_keeps_orders_then_enable_accepts(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool
) -> None:
    shop = await create(app_client, admin_key)
    ref = f"O-{uuid.uuid4().hex[:10]}"
    assert (await post_order(app_client, shop["id"], shop["secret"], ref)).status_code == 200

    response = await app_client.post(f"{MERCHANTS}/{shop['id']}/disable", headers=bearer(admin_key))
    assert response.status_code == 200, response.text
    assert response.json()["disabled_at"] is not None
    refused = await post_order(app_client, shop["id"], shop["secret"])
    message = assert_error(refused, 403, "forbidden")["message"]
    assert f"merchant {shop['id']} is disabled" in message
    # A wrong signature says nothing of the merchant's state: still a 401.
    assert (await post_order(app_client, shop["id"], "ctm_" + "x" * 43)).status_code == 401
    kept = await pool.fetchval(
        "SELECT count(*) FROM orders WHERE merchant_id = $1 AND order_ref = $2", shop["id"], ref
    )
    assert kept == 1

    # Disabling again changes nothing (the first time is kept).
    again = await app_client.post(f"{MERCHANTS}/{shop['id']}/disable", headers=bearer(admin_key))
    assert again.json()["disabled_at"] == response.json()["disabled_at"]

    enabled = await app_client.post(f"{MERCHANTS}/{shop['id']}/enable", headers=bearer(admin_key))
    assert enabled.status_code == 200 and enabled.json()["disabled_at"] is None
    assert (await post_order(app_client, shop["id"], shop["secret"])).status_code == 200


async def test_rotation_with_overlap_accepts_both_until_it_ends(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool
) -> None:
    shop = await create(app_client, admin_key)
    old = shop["secret"]
    response = await app_client.post(
        f"{MERCHANTS}/{shop['id']}/rotate-secret",
        json={"overlap_seconds": 3600},
        headers=bearer(admin_key),
    )
    assert response.status_code == 200, response.text
    rotated = response.json()
    new = rotated["secret"]
    assert new != old and rotated["old_secret_accepted"] is True
    until = datetime.fromisoformat(rotated["old_secret_accepted_until"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1)
    assert (await post_order(app_client, shop["id"], old)).status_code == 200
    assert (await post_order(app_client, shop["id"], new)).status_code == 200

    # The overlap ends: only the new secret signs.
    await pool.execute(
        "UPDATE merchants SET previous_secret_expires_at = now() - interval '1 second' "
        "WHERE id = $1",
        shop["id"],
    )
    assert_error(await post_order(app_client, shop["id"], old), 401, "unauthorized")
    assert (await post_order(app_client, shop["id"], new)).status_code == 200
    shown = await listed(app_client, admin_key, shop["id"])
    assert shown["old_secret_accepted"] is False and shown["old_secret_accepted_until"] is None


async def test_rotation_without_overlap_refuses_the_old_secret_at_once(
    app_client: httpx.AsyncClient, admin_key: str
) -> None:
    shop = await create(app_client, admin_key)
    first = await app_client.post(
        f"{MERCHANTS}/{shop['id']}/rotate-secret",
        json={"overlap_seconds": 600},
        headers=bearer(admin_key),
    )
    # No body: no overlap. Both earlier secrets stop now (the kept one is dropped too).
    second = await app_client.post(
        f"{MERCHANTS}/{shop['id']}/rotate-secret", headers=bearer(admin_key)
    )
    assert second.status_code == 200, second.text
    assert second.json()["old_secret_accepted"] is False
    for stale in (shop["secret"], first.json()["secret"]):
        refused = await post_order(app_client, shop["id"], stale)
        message = assert_error(refused, 401, "unauthorized")["message"]
        assert "signature does not match" in message
    assert (await post_order(app_client, shop["id"], second.json()["secret"])).status_code == 200


async def test_set_hosts_replaces_them(app_client: httpx.AsyncClient, admin_key: str) -> None:
    shop = await create(app_client, admin_key, hosts=["a.example.com"])
    response = await app_client.put(
        f"{MERCHANTS}/{shop['id']}/hosts",
        json={"hosts": ["b.example.com", "*.example.org"]},
        headers=bearer(admin_key),
    )
    assert response.status_code == 200, response.text
    assert response.json()["hosts"] == ["b.example.com", "*.example.org"]
    cleared = await app_client.put(
        f"{MERCHANTS}/{shop['id']}/hosts", json={"hosts": []}, headers=bearer(admin_key)
    )
    assert cleared.json()["hosts"] == []


async def test_publisher_keys_get_403(app_client: httpx.AsyncClient, admin_key: str) -> None:
    shop = await create(app_client, admin_key)
    publisher = await new_publisher(app_client, admin_key, "Not an admin")
    key = await new_publisher_key(app_client, admin_key, publisher)
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", MERCHANTS, None),
        ("POST", MERCHANTS, {"name": "Mine now"}),
        ("POST", f"{MERCHANTS}/{shop['id']}/disable", None),
        ("POST", f"{MERCHANTS}/{shop['id']}/enable", None),
        ("POST", f"{MERCHANTS}/{shop['id']}/rotate-secret", {"overlap_seconds": 0}),
        ("PUT", f"{MERCHANTS}/{shop['id']}/hosts", {"hosts": []}),
    ]
    for method, url, body in calls:
        response = await app_client.request(method, url, json=body, headers=bearer(key))
        assert_error(response, 403, "forbidden")
    assert (await listed(app_client, admin_key, shop["id"]))["disabled_at"] is None


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("POST", "", {"name": "X", "secret": "mine"}, 422, "unknown field"),
        ("POST", "", {"name": "   "}, 422, "must not be blank"),
        ("POST", "", {"name": "X", "hosts": ["not a host"]}, 422, "hosts"),
        ("POST", "/{id}/rotate-secret", {"overlap_seconds": 604801}, 422, "overlap_seconds"),
        ("POST", "/{id}/rotate-secret", {"overlap_seconds": -1}, 422, "overlap_seconds"),
        ("PUT", "/{id}/hosts", {}, 422, "hosts"),
        ("POST", "/999999999/disable", None, 404, "does not exist"),
        ("POST", "/0/enable", None, 422, "merchant_id"),
        ("PUT", "/999999999/hosts", {"hosts": []}, 404, "does not exist"),
    ],
)
async def test_bad_input_is_a_4xx_in_words(
    app_client: httpx.AsyncClient,
    admin_key: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    words: str,
) -> None:
    shop = await create(app_client, admin_key)
    url = MERCHANTS + path.format(id=shop["id"])
    response = await app_client.request(method, url, json=body, headers=bearer(admin_key))
    assert response.status_code == status, response.text
    assert words in response.text


async def test_duplicate_name_is_refused(app_client: httpx.AsyncClient, admin_key: str) -> None:
    shop = await create(app_client, admin_key)
    again = await app_client.post(MERCHANTS, json={"name": shop["name"]}, headers=bearer(admin_key))
    assert "already exists" in assert_error(again, 422, "invalid")["message"]


# -- the CLI ---------------------------------------------------------------------------------


def _cli(database_url: str, *args: str) -> str:
    result = run_cli(database_url, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_cli_disable_enable_and_rotate_with_overlap(
    app_client: httpx.AsyncClient, database_url: str, pool: Pool
) -> None:
    name = f"Cli shop {uuid.uuid4().hex[:8]}"
    out = _cli(database_url, "create-merchant", name, "--host", "shop.example.com")
    merchant_id, secret = int(out.split()[1]), out.strip().splitlines()[-1]
    assert (await post_order(app_client, merchant_id, secret)).status_code == 200

    assert "disabled since" in _cli(database_url, "disable-merchant", name)
    assert (await post_order(app_client, merchant_id, secret)).status_code == 403
    assert "disabled since" in _cli(database_url, "list-merchants")
    _cli(database_url, "enable-merchant", name)
    assert (await post_order(app_client, merchant_id, secret)).status_code == 200

    out = _cli(database_url, "rotate-merchant-secret", name, "--overlap-seconds", "600")
    assert "still accepted until" in out
    new = out.strip().splitlines()[-1]
    assert (await post_order(app_client, merchant_id, secret)).status_code == 200
    assert (await post_order(app_client, merchant_id, new)).status_code == 200
    await pool.execute(
        "UPDATE merchants SET previous_secret_expires_at = now() - interval '1 second' "
        "WHERE id = $1",
        merchant_id,
    )
    assert (await post_order(app_client, merchant_id, secret)).status_code == 401
    assert (await post_order(app_client, merchant_id, new)).status_code == 200

    out = _cli(database_url, "rotate-merchant-secret", name)
    assert "the old one no longer works" in out
    newest = out.strip().splitlines()[-1]
    assert (await post_order(app_client, merchant_id, new)).status_code == 401
    assert (await post_order(app_client, merchant_id, newest)).status_code == 200


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["rotate-merchant-secret", "X", "--overlap-seconds", "604801"], "must be 0 to 604800"),
        (["rotate-merchant-secret", "X", "--overlap-seconds", "soon"], "not a whole number"),
        (["rotate-merchant-secret", "No such shop"], "no merchant named"),
        (["disable-merchant", "No such shop"], "no merchant named"),
        (["enable-merchant", "No such shop"], "no merchant named"),
        (["disable-merchant"], "required"),
    ],
)
def test_cli_bad_input_is_a_message_and_non_zero_exit(
    database_url: str, args: list[str], words: str
) -> None:
    result = run_cli(database_url, *args)
    assert result.returncode != 0
    assert words in result.stderr
    assert "Traceback" not in result.stderr
