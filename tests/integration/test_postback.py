"""Postbacks on real Postgres: signatures, idempotency, order of arrival, attribution, races."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.clicks.record import Flag
from app.core.db import Pool
from app.links import model as link_model
from tests.support.orders import (
    add_click,
    new_link,
    new_merchant,
    new_publisher,
    order_body,
    signed,
    uuid7_at,
)

URL = "/api/v1/postback"
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Shop:
    merchant_id: int
    secret: str
    publisher_id: int
    link: link_model.Link

    async def post(self, client: httpx.AsyncClient, body: bytes, **headers: str) -> httpx.Response:
        sent = {**signed(self.merchant_id, self.secret, body), **headers}
        return await client.post(URL, content=body, headers=sent)


@pytest.fixture
async def shop(pool: Pool) -> Shop:
    async with pool.acquire() as conn:
        merchant_id, secret = await new_merchant(conn)
        publisher_id = await new_publisher(conn)
        link = await new_link(conn, publisher_id)
    return Shop(merchant_id, secret, publisher_id, link)


def order_ref() -> str:
    return f"ORD-{uuid.uuid4().hex[:12]}"


async def fetch_order(pool: Pool, merchant_id: int, ref: str) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT * FROM orders WHERE merchant_id = $1 AND order_ref = $2", merchant_id, ref
    )
    assert row is not None
    return dict(row)


def assert_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == kind
    message: str = body["message"]
    return message


async def test_attributed_order_inherits_the_click(
    app_client: httpx.AsyncClient, pool: Pool, shop: Shop
) -> None:
    clicked = NOW - timedelta(hours=2)
    async with pool.acquire() as conn:
        click_id = await add_click(conn, shop.link, clicked, af="001", cn="002", cv="003", dp="x")
    ref = order_ref()
    body = order_body(ref, click_id, clicked + timedelta(minutes=5), "25.50")
    response = await shop.post(app_client, body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "outcome": "created",
        "order_id": ref,
        "status": "incomplete",
        "attribution": "attributed",
    }
    row = await fetch_order(pool, shop.merchant_id, ref)
    assert row["publisher_id"] == shop.publisher_id
    assert (row["code"], row["af"], row["cn"], row["cv"], row["dp"]) == (
        shop.link.code,
        "001",
        "002",
        "003",
        "x",
    )
    assert str(row["amount"]) == "25.50"


async def test_the_same_postback_again_is_a_no_op(
    app_client: httpx.AsyncClient, pool: Pool, shop: Shop
) -> None:
    async with pool.acquire() as conn:
        click_id = await add_click(conn, shop.link, NOW - timedelta(hours=1))
    ref = order_ref()
    body = order_body(ref, click_id, NOW - timedelta(minutes=30), "10.00", status="completed")
    first = await shop.post(app_client, body)
    assert first.json()["outcome"] == "created"
    before = await fetch_order(pool, shop.merchant_id, ref)
    for _ in range(3):
        again = await shop.post(app_client, body)
        assert again.status_code == 200
        assert again.json()["outcome"] == "unchanged"
    assert await fetch_order(pool, shop.merchant_id, ref) == before


async def test_updates_out_of_order_never_move_backwards(
    app_client: httpx.AsyncClient, pool: Pool, shop: Shop
) -> None:
    async with pool.acquire() as conn:
        click_id = await add_click(conn, shop.link, NOW - timedelta(days=3))
    ref = order_ref()
    placed = NOW - timedelta(days=3)

    def body(status: str, days: int) -> bytes:
        return order_body(
            ref, click_id, placed, "99.99", status=status, status_time=placed + timedelta(days=days)
        )

    assert (await shop.post(app_client, body("completed", 2))).json()["outcome"] == "created"
    stale = await shop.post(app_client, body("completed_payment", 1))
    assert stale.json() == {**stale.json(), "outcome": "unchanged", "status": "completed"}
    stale = await shop.post(app_client, body("incomplete", 0))
    assert stale.json()["status"] == "completed"
    refunded = await shop.post(app_client, body("refunded", 3))
    assert refunded.json()["outcome"] == "updated"
    assert (await shop.post(app_client, body("invalid", 3))).json()["status"] == "refunded"
    row = await fetch_order(pool, shop.merchant_id, ref)
    assert row["status"] == "refunded"
    assert row["completed_at"] == placed + timedelta(days=2)


async def test_changed_facts_are_a_conflict(
    app_client: httpx.AsyncClient, pool: Pool, shop: Shop
) -> None:
    ref = order_ref()
    click_id = str(uuid7_at(NOW))
    assert (await shop.post(app_client, order_body(ref, click_id, NOW, "5.00"))).status_code == 200
    changed = await shop.post(
        app_client, order_body(ref, click_id, NOW, "6.00", status="completed")
    )
    assert "amount" in assert_error(changed, 409, "conflict")
    assert (await fetch_order(pool, shop.merchant_id, ref))["status"] == "incomplete"


async def test_unknown_click_is_kept_and_attributed_when_the_click_arrives(
    app_client: httpx.AsyncClient, pool: Pool, shop: Shop, admin_key: str
) -> None:
    clicked = NOW - timedelta(minutes=10)
    click_id = uuid7_at(clicked)
    ref = order_ref()
    first = await shop.post(app_client, order_body(ref, str(click_id), clicked, "12.00"))
    assert first.json()["attribution"] == "unattributed"
    row = await fetch_order(pool, shop.merchant_id, ref)
    assert row["publisher_id"] is None and row["click_id"] == click_id

    # The flusher catches up; the next status update attributes the order.
    async with pool.acquire() as conn:
        await add_click(conn, shop.link, clicked, click_id=click_id, dp="late")
    update = await shop.post(
        app_client, order_body(ref, str(click_id), clicked, "12.00", status="completed_payment")
    )
    assert update.json()["attribution"] == "attributed"
    assert (await fetch_order(pool, shop.merchant_id, ref))["dp"] == "late"

    # Or an admin's re-attribution does it, without any postback.
    other_click = uuid7_at(clicked)
    other = order_ref()
    await shop.post(app_client, order_body(other, str(other_click), clicked, "1.00"))
    async with pool.acquire() as conn:
        await add_click(conn, shop.link, clicked, click_id=other_click)
    response = await app_client.post(
        "/api/v1/orders/reattribute", headers={"Authorization": f"Bearer {admin_key}"}
    )
    assert response.status_code == 200 and response.json()["attributed"] >= 1
    assert (await fetch_order(pool, shop.merchant_id, other))["attribution"] == "attributed"


async def test_malformed_or_flagged_clicks(
    app_client: httpx.AsyncClient, pool: Pool, shop: Shop
) -> None:
    ref = order_ref()
    odd = await shop.post(app_client, order_body(ref, "not-a-click-id", NOW, "3.00"))
    assert odd.json()["attribution"] == "unattributed"
    row = await fetch_order(pool, shop.merchant_id, ref)
    assert row["click_ref"] == "not-a-click-id" and row["click_id"] is None

    async with pool.acquire() as conn:
        click_id = await add_click(conn, shop.link, NOW, flags=Flag.bot | Flag.iframe)
    ref = order_ref()
    flagged = await shop.post(app_client, order_body(ref, click_id, NOW, "3.00"))
    assert flagged.json()["attribution"] == "disqualified"
    row = await fetch_order(pool, shop.merchant_id, ref)
    assert row["publisher_id"] == shop.publisher_id
    assert row["disqualified_reason"] == "flagged click: bot, iframe"


async def test_signature_is_required_and_checked(
    app_client: httpx.AsyncClient, pool: Pool, shop: Shop
) -> None:
    body = order_body(order_ref(), str(uuid7_at(NOW)), NOW, "1.00")
    headers = signed(shop.merchant_id, shop.secret, body)
    old = int(time.time()) - 301
    cases: list[dict[str, str]] = [
        {k: v for k, v in headers.items() if k != "X-Clicktrack-Signature"},
        {k: v for k, v in headers.items() if k != "X-Clicktrack-Merchant"},
        {
            **headers,
            "X-Clicktrack-Signature": signed(shop.merchant_id, "ctm_wrong", body)[
                "X-Clicktrack-Signature"
            ],
        },
        {**headers, "X-Clicktrack-Merchant": "999999999"},
        {**headers, "X-Clicktrack-Merchant": "abc"},
        signed(shop.merchant_id, shop.secret, body, timestamp=old),
    ]
    for sent in cases:
        response = await app_client.post(URL, content=body, headers=sent)
        assert_error(response, 401, "unauthorized")
    tampered = body.replace(b"1.00", b"9.00")
    response = await app_client.post(URL, content=tampered, headers=headers)
    assert "does not match" in assert_error(response, 401, "unauthorized")
    assert (
        await pool.fetchval("SELECT count(*) FROM orders WHERE merchant_id = $1", shop.merchant_id)
        == 0
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "1.001"}, "amount"),
        ({"amount": "-1"}, "amount"),
        ({"currency": "EUR"}, "currency"),
        ({"category": "Computer & Office"}, "category"),
        ({"status": "shipped"}, "status"),
        ({"order_time": "2016-09-20T10:00:00"}, "order_time"),  # no time zone
        ({"order_time": "2999-01-01T00:00:00Z"}, "order_time"),  # future
        ({"status_time": "2000-01-01T00:00:00Z"}, "status_time"),  # before the order
        ({"order_id": ""}, "order_id"),
        ({"order_id": "A\u0000B"}, "order_id"),  # Postgres text cannot hold NUL
        ({"click_id": "x\ny"}, "click_id"),
    ],
)
async def test_bad_bodies_are_422(
    app_client: httpx.AsyncClient, shop: Shop, change: dict[str, str], field: str
) -> None:
    data = json.loads(order_body(order_ref(), str(uuid7_at(NOW)), NOW - timedelta(days=1), "1"))
    data.update(change)
    body = json.dumps(data).encode()
    message = assert_error(await shop.post(app_client, body), 422, "invalid")
    assert field in message


async def test_not_json_and_too_large(app_client: httpx.AsyncClient, shop: Shop) -> None:
    assert_error(await shop.post(app_client, b"{not json"), 422, "invalid")
    assert_error(await shop.post(app_client, b"[]"), 422, "invalid")
    big = b'{"pad": "' + b"x" * 20_000 + b'"}'
    assert_error(await shop.post(app_client, big), 413, "too_large")


async def test_racing_postbacks_for_one_order_end_consistent(
    app_client: httpx.AsyncClient, pool: Pool, shop: Shop
) -> None:
    placed = NOW - timedelta(days=1)
    async with pool.acquire() as conn:
        click_id = await add_click(conn, shop.link, placed - timedelta(minutes=1))
    statuses = ["incomplete", "completed_payment", "completed", "incomplete", "completed"] * 3
    for round_ in range(3):
        ref = order_ref()
        bodies = [
            order_body(
                ref, click_id, placed, "42.00", status=s, status_time=placed + timedelta(hours=1)
            )
            for s in statuses[round_:] + statuses[:round_]
        ]
        responses = await asyncio.gather(*(shop.post(app_client, b) for b in bodies))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        outcomes = [r.json()["outcome"] for r in responses]
        assert outcomes.count("created") == 1
        row = await fetch_order(pool, shop.merchant_id, ref)
        assert row["status"] == "completed"
        assert row["attribution"] == "attributed"
        count = await pool.fetchval(
            "SELECT count(*) FROM orders WHERE merchant_id = $1 AND order_ref = $2",
            shop.merchant_id,
            ref,
        )
        assert count == 1
