"""The log of received merchant postbacks and its replays, on real Postgres: what arrived, what
it changed, why it was refused; replays one and many (docs/postbacks.md)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.core.db import Pool
from app.core.metrics import POSTBACKS_RECEIVED
from app.links import model as link_model
from tests.integration.test_api import assert_error, bearer, new_publisher_key
from tests.support.orders import (
    add_click,
    new_link,
    new_merchant,
    new_publisher,
    order_body,
    signed,
)

URL = "/api/v1/postback"
MERCHANTS = "/api/v1/merchants"
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Shop:
    merchant_id: int
    secret: str
    publisher_id: int
    link: link_model.Link
    click_id: str

    async def post(self, client: httpx.AsyncClient, body: bytes, **headers: str) -> httpx.Response:
        sent = {**signed(self.merchant_id, self.secret, body), **headers}
        return await client.post(URL, content=body, headers=sent)

    def body(self, ref: str, amount: str = "120.00", **fields: Any) -> bytes:
        return order_body(ref, self.click_id, NOW - timedelta(hours=1), amount, **fields)


@pytest.fixture
async def shop(pool: Pool) -> Shop:
    async with pool.acquire() as conn:
        merchant_id, secret = await new_merchant(conn)
        publisher_id = await new_publisher(conn)
        link = await new_link(conn, publisher_id)
        click_id = await add_click(conn, link, NOW - timedelta(hours=2))
    return Shop(merchant_id, secret, publisher_id, link, click_id)


def ref() -> str:
    return f"ORD-{uuid.uuid4().hex[:12]}"


async def log_of(
    client: httpx.AsyncClient, admin_key: str, merchant_id: int, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(
        f"{MERCHANTS}/{merchant_id}/postbacks", params=params, headers=bearer(admin_key)
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def counted(outcome: str) -> float:
    """The clicktrack_postbacks_received counter of ``outcome``, in this process."""
    value: float = POSTBACKS_RECEIVED.labels(outcome)._value.get()
    return value


async def test_each_postback_logged_with_what_it_changed(
    app_client: httpx.AsyncClient, admin_key: str, shop: Shop
) -> None:
    order = ref()
    before_created, before_unchanged = counted("created"), counted("unchanged")
    first = shop.body(order)
    assert (await shop.post(app_client, first)).json()["outcome"] == "created"
    done = shop.body(order, status="completed")
    assert (await shop.post(app_client, done)).json()["outcome"] == "updated"
    assert (await shop.post(app_client, done)).json()["outcome"] == "unchanged"

    newest, middle, oldest = await log_of(app_client, admin_key, shop.merchant_id)
    assert [oldest["outcome"], middle["outcome"], newest["outcome"]] == [
        "created",
        "updated",
        "unchanged",
    ]
    assert (oldest["status_before"], oldest["status_after"]) == (None, "incomplete")
    assert (middle["status_before"], middle["status_after"]) == ("incomplete", "completed")
    assert (newest["status_before"], newest["status_after"]) == ("completed", "completed")
    for row in (oldest, middle, newest):
        assert row["http_status"] == 200 and row["error"] is None
        assert row["order_id"] == order and row["attribution"] == "attributed"
        assert row["replay_of"] is None
    assert json.loads(oldest["body"]) == json.loads(first)
    assert json.loads(middle["body"])["status"] == "completed"
    assert counted("created") == before_created + 1
    assert counted("unchanged") == before_unchanged + 1


async def test_refusals_logged_with_the_answer_given(
    app_client: httpx.AsyncClient, admin_key: str, shop: Shop
) -> None:
    before_refused = counted("refused")
    order = ref()
    bad_amount = shop.body(order, amount="-5.00")
    invalid = await shop.post(app_client, bad_amount)
    invalid_message = assert_error(invalid, 422, "invalid")["message"]

    assert (await shop.post(app_client, shop.body(order))).status_code == 200
    conflicting = await shop.post(app_client, shop.body(order, amount="99.00"))
    conflict_message = assert_error(conflicting, 409, "conflict")["message"]

    not_json = b"{not json"
    garbled = await shop.post(app_client, not_json)
    garbled_message = assert_error(garbled, 422, "invalid")["message"]

    rows = await log_of(app_client, admin_key, shop.merchant_id, outcome="refused")
    by_status = {(r["http_status"], r["error"]): r for r in rows}
    assert set(by_status) == {
        (422, invalid_message),
        (409, conflict_message),
        (422, garbled_message),
    }
    # The body was signed: it is kept, and the order id read from it when it names one.
    assert by_status[(422, invalid_message)]["body"] == bad_amount.decode()
    assert by_status[(422, invalid_message)]["order_id"] == order
    assert by_status[(409, conflict_message)]["order_id"] == order
    assert by_status[(422, garbled_message)]["order_id"] is None
    assert by_status[(422, garbled_message)]["body"] == not_json.decode()
    assert all(r["status_after"] is None and r["outcome"] == "refused" for r in rows)
    assert counted("refused") == before_refused + 3
    # The refused change left nothing behind: one creation for the order, its amount intact.
    created = await log_of(app_client, admin_key, shop.merchant_id, outcome="created")
    assert [r["order_id"] for r in created] == [order]


async def test_unverified_postbacks_logged_without_their_body(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool, shop: Shop
) -> None:
    body = shop.body(ref())
    forged = await shop.post(app_client, body, **{"X-Clicktrack-Signature": "0" * 64})
    forged_message = assert_error(forged, 401, "unauthorized")["message"]
    huge = b"{" + b" " * 20_000 + b"}"
    too_large = await shop.post(app_client, huge)
    assert_error(too_large, 413, "too_large")

    rows = await log_of(app_client, admin_key, shop.merchant_id)
    assert [(r["http_status"], r["body"], r["order_id"]) for r in rows] == [
        (413, None, None),
        (401, None, None),
    ]
    assert rows[1]["error"] == forged_message
    replay = await app_client.post(
        f"{MERCHANTS}/{shop.merchant_id}/postbacks/{rows[1]['id']}/replay",
        headers=bearer(admin_key),
    )
    assert "body was not kept" in assert_error(replay, 409, "conflict")["message"]

    # No merchant, no row: a stranger cannot write to any merchant's log.
    unknown = {**signed(shop.merchant_id, shop.secret, body), "X-Clicktrack-Merchant": "0"}
    assert (await app_client.post(URL, content=body, headers=unknown)).status_code == 401
    malformed = {**signed(shop.merchant_id, shop.secret, body), "X-Clicktrack-Merchant": "x"}
    assert (await app_client.post(URL, content=body, headers=malformed)).status_code == 401
    stored = await pool.fetchval(
        "SELECT count(*) FROM received_postbacks WHERE merchant_id = $1", shop.merchant_id
    )
    assert stored == 2


async def test_replay_one_runs_it_again_and_is_audited(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool, shop: Shop
) -> None:
    order = ref()
    assert (await shop.post(app_client, shop.body(order))).status_code == 200
    (original,) = await log_of(app_client, admin_key, shop.merchant_id)
    replay = await app_client.post(
        f"{MERCHANTS}/{shop.merchant_id}/postbacks/{original['id']}/replay",
        headers=bearer(admin_key),
    )
    assert replay.status_code == 200, replay.text
    again = replay.json()
    assert again["replay_of"] == original["id"] and again["id"] != original["id"]
    assert again["outcome"] == "unchanged" and again["body"] == original["body"]
    one = await app_client.get(
        f"{MERCHANTS}/{shop.merchant_id}/postbacks/{again['id']}", headers=bearer(admin_key)
    )
    assert one.json() == again
    audited = await pool.fetchval(
        """SELECT count(*) FROM audit_log WHERE action = 'received_postback.replay'
           AND target_id = $1""",
        str(original["id"]),
    )
    assert audited == 1


async def test_replay_matching_after_a_merchant_is_enabled_again(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool, shop: Shop
) -> None:
    admin = bearer(admin_key)
    assert (
        await app_client.post(f"{MERCHANTS}/{shop.merchant_id}/disable", headers=admin)
    ).is_success
    orders = [ref() for _ in range(3)]
    for order in orders:
        refused = await shop.post(app_client, shop.body(order))
        assert_error(refused, 403, "forbidden")
    # Replayed while still disabled: refused again, logged as such, nothing created.
    still = await app_client.post(
        f"{MERCHANTS}/{shop.merchant_id}/postbacks/replay", json={}, headers=admin
    )
    assert still.json()["outcomes"] == {"refused": 3}
    assert (
        await pool.fetchval("SELECT count(*) FROM orders WHERE merchant_id = $1", shop.merchant_id)
        == 0
    )

    assert (
        await app_client.post(f"{MERCHANTS}/{shop.merchant_id}/enable", headers=admin)
    ).is_success
    replayed = await app_client.post(
        f"{MERCHANTS}/{shop.merchant_id}/postbacks/replay", json={}, headers=admin
    )
    assert replayed.status_code == 200, replayed.text
    result = replayed.json()
    # The originals only, oldest first, not the refused replays of a moment ago.
    assert result["replayed"] == 3 and result["outcomes"] == {"created": 3}
    stored = await pool.fetch(
        "SELECT order_ref FROM orders WHERE merchant_id = $1 ORDER BY id", shop.merchant_id
    )
    assert [r["order_ref"] for r in stored] == orders
    rows = {r["id"]: r for r in await log_of(app_client, admin_key, shop.merchant_id, limit=100)}
    assert [rows[i]["order_id"] for i in result["items"]] == orders
    # Each change is kept once: a second replay finds the orders there.
    twice = await app_client.post(
        f"{MERCHANTS}/{shop.merchant_id}/postbacks/replay", json={}, headers=admin
    )
    assert twice.json()["outcomes"] == {"unchanged": 3}


async def test_filters_pages_and_refusals_of_the_log_api(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool, shop: Shop
) -> None:
    admin = bearer(admin_key)
    orders = [ref() for _ in range(5)]
    for order in orders:
        assert (await shop.post(app_client, shop.body(order))).status_code == 200
    picked = await log_of(app_client, admin_key, shop.merchant_id, order_id=orders[2])
    assert [r["order_id"] for r in picked] == [orders[2]]
    first = await app_client.get(
        f"{MERCHANTS}/{shop.merchant_id}/postbacks", params={"limit": 2}, headers=admin
    )
    page = first.json()
    assert [r["order_id"] for r in page["items"]] == orders[:2:-1][:2]
    rest = await log_of(app_client, admin_key, shop.merchant_id, before=page["next_before"])
    assert [r["order_id"] for r in rest] == orders[2::-1]
    later = (NOW + timedelta(days=1)).isoformat()
    assert await log_of(app_client, admin_key, shop.merchant_id, since=later) == []
    assert len(await log_of(app_client, admin_key, shop.merchant_id, until=later)) == 5

    async with pool.acquire() as conn:
        other_merchant, _ = await new_merchant(conn)
    row_id = page["items"][0]["id"]
    cases: list[tuple[str, str, Any, int, str]] = [
        ("GET", f"/{other_merchant}/postbacks/{row_id}", None, 404, "no received postback"),
        ("GET", "/999999999/postbacks", None, 404, "does not exist"),
        ("GET", f"/{shop.merchant_id}/postbacks?outcome=lost", None, 422, "outcome"),
        ("GET", f"/{shop.merchant_id}/postbacks?since=yesterday", None, 422, "since"),
        ("POST", f"/{shop.merchant_id}/postbacks/replay", {"outcome": "x"}, 422, "outcome"),
        ("POST", f"/{shop.merchant_id}/postbacks/replay", {"extra": 1}, 422, "extra"),
        (
            "POST",
            f"/{shop.merchant_id}/postbacks/replay",
            {"since": later, "until": NOW.isoformat()},
            422,
            "until",
        ),
        ("POST", f"/{shop.merchant_id}/postbacks/999999999/replay", None, 404, "no received"),
    ]
    for method, path, body, status, words in cases:
        response = await app_client.request(method, f"{MERCHANTS}{path}", json=body, headers=admin)
        assert response.status_code == status, (path, response.text)
        assert words in response.json()["message"], (path, response.text)

    publisher_key = await new_publisher_key(app_client, admin_key, shop.publisher_id)
    forbidden = await app_client.get(
        f"{MERCHANTS}/{shop.merchant_id}/postbacks", headers=bearer(publisher_key)
    )
    assert forbidden.status_code == 403
