"""Outbound postbacks and webhooks on real Postgres, delivered over real HTTP to a receiver
on loopback (tests/support/receiver.py) by the sender's loop."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.core.db import Pool
from app.orders.attribution import reattribute
from app.orders.status import OrderStatus
from app.orders.store import OrderReport, record_postback
from app.postbacks import outbox, signing, store
from app.postbacks.endpoints import EndpointKind
from app.settings import Settings
from tests.support.accounts import Account, app_on, bearer
from tests.support.orders import add_click, new_link, new_merchant, new_publisher, uuid7_at
from tests.support.receiver import Receiver
from tests.support.sending import running_sender, sender_settings, settled

ALL_EVENTS = [
    "order_attributed",
    "order_completed",
    "order_partially_refunded",
    "order_refunded",
    "commission_credited",
    "commission_charged_back",
]
TEMPLATE = (
    "/pb?cid={click_id}&af={af}&cn={cn}&cv={cv}&dp={dp}&oid={order_id}&sum={amount}"
    "&cur={currency}&com={commission}&s={status}&e={event}&eid={event_id}&t={time}"
)


@pytest.fixture(autouse=True)
async def endpoints_disabled_after(pool: Pool) -> AsyncIterator[None]:
    """Each test's endpoints end with it: no later test's sender sends to its receivers."""
    yield
    await pool.execute("UPDATE postback_endpoints SET disabled_at = now()")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    await found.start()
    try:
        yield found
    finally:
        await found.stop()


async def new_endpoint(
    pool: Pool, publisher_id: int, url: str, *, kind: str = "postback", events: Any = None
) -> int:
    async with pool.acquire() as conn:
        found, _ = await store.create_endpoint(
            conn, publisher_id, EndpointKind(kind), url, events or ["order_completed"]
        )
    return found.id


async def test_each_event_once_with_macros_and_a_valid_signature(
    settings: Settings, pool: Pool, admin_key: str, receiver: Receiver
) -> None:
    async with app_on(sender_settings(settings)) as client:
        account = await Account.open(client, pool, admin_key)
        made = {}
        for kind, url in (("postback", receiver.url(TEMPLATE)), ("webhook", receiver.url())):
            response = await client.post(
                "/api/v1/postbacks/endpoints",
                json={"kind": kind, "url": url, "events": ALL_EVENTS},
                headers=bearer(account.key),
            )
            assert response.status_code == 201, response.text
            made[kind] = response.json()
        assert made["postback"]["secret"] is None
        secret = made["webhook"]["secret"]
        placed = datetime(2017, 1, 15, 10, tzinfo=UTC)
        async with pool.acquire() as conn:
            click_id = await add_click(
                conn, account.link, placed - timedelta(minutes=3), af="sub 1&x=2", cn="c1"
            )
        order = await account.new_order(placed, "100.00")
        order.click_id = click_id
        await account.report(order, "completed", placed + timedelta(days=2))
        await account.close("2017-01")  # credited: 8.00
        await account.report(order, "partially_refunded", placed + timedelta(days=30), "50.00")
        await account.report(order, "refunded", placed + timedelta(days=31), "0.00")
        await account.close("2017-02")  # charged back
    async with running_sender(sender_settings(settings), pool):
        await receiver.wait_for(12, within=10)
        await asyncio.sleep(0.3)  # nothing more comes
    assert len(receiver.requests) == 12
    gets = [r for r in receiver.requests if r.method == "GET"]
    posts = [r for r in receiver.requests if r.method == "POST"]
    assert sorted(r.query["e"] for r in gets) == sorted(ALL_EVENTS)
    by_event = {r.query["e"]: r.query for r in gets}
    completed = by_event["order_completed"]
    assert completed["cid"] == click_id and completed["oid"] == order.ref
    assert completed["af"] == "sub 1&x=2" and completed["cn"] == "c1" and completed["cv"] == ""
    assert (completed["sum"], completed["cur"], completed["s"]) == ("100.00", "USD", "completed")
    assert by_event["commission_credited"]["com"] == "8.00"
    assert by_event["commission_charged_back"]["com"] == "-8.00"  # all it was credited
    assert by_event["order_partially_refunded"]["sum"] == "50.00"
    assert "%26x%3D2" in next(r.target for r in gets if r.query["e"] == "order_completed")
    assert sorted(json.loads(r.body)["event"] for r in posts) == sorted(ALL_EVENTS)
    for post in posts:
        headers = post.headers
        assert signing.valid(
            secret, headers["x-clicktrack-timestamp"], post.body, headers["x-clicktrack-signature"]
        )
        assert headers["x-clicktrack-event-id"] == json.loads(post.body)["event_id"]
        assert headers["x-clicktrack-event"] == json.loads(post.body)["event"]
    # One event id per event, the same for both endpoints; each endpoint got each once.
    assert len(receiver.distinct) == 6
    assert len({(r.method, r.event_id) for r in receiver.requests}) == 12


async def test_a_rolled_back_change_leaves_no_event(pool: Pool, receiver: Receiver) -> None:
    async with pool.acquire() as conn:
        publisher_id = await new_publisher(conn)
        link = await new_link(conn, publisher_id)
        merchant_id, _ = await new_merchant(conn)
        placed = datetime.now(UTC) - timedelta(hours=1)
        click_id = await add_click(conn, link, placed - timedelta(minutes=1))
    await new_endpoint(pool, publisher_id, receiver.url(TEMPLATE), events=ALL_EVENTS)
    report = OrderReport(
        "R-1",
        click_id,
        placed,
        Decimal("10.00"),
        "USD",
        "home-garden",
        False,
        OrderStatus.completed,
        placed,
    )

    async def events() -> int:
        found: int = await pool.fetchval(
            "SELECT count(*) FROM outbox_events WHERE publisher_id = $1", publisher_id
        )
        return found

    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await record_postback(conn, merchant_id, report)
                assert (
                    await conn.fetchval(
                        "SELECT count(*) FROM outbox_events WHERE publisher_id = $1", publisher_id
                    )
                    == 2
                )  # attributed, completed: written in the change's transaction
                raise RuntimeError("the change fails after the order was written")
    assert await events() == 0
    async with pool.acquire() as conn:
        await record_postback(conn, merchant_id, report)
        await record_postback(conn, merchant_id, report)  # a repeat: no new event
    assert await events() == 2


async def test_a_publisher_without_endpoints_gets_no_rows(pool: Pool) -> None:
    async with pool.acquire() as conn:
        publisher_id = await new_publisher(conn)
        link = await new_link(conn, publisher_id)
        merchant_id, _ = await new_merchant(conn)
        placed = datetime.now(UTC) - timedelta(hours=1)
        click_id = await add_click(conn, link, placed - timedelta(minutes=1))
        report = OrderReport(
            "N-1",
            click_id,
            placed,
            Decimal("10.00"),
            "USD",
            "home-garden",
            False,
            OrderStatus.completed,
            placed,
        )
        await record_postback(conn, merchant_id, report)
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM outbox_events WHERE publisher_id = $1", publisher_id
            )
            == 0
        )


async def _test_events(pool: Pool, endpoint_id: int, publisher_id: int, n: int) -> set[str]:
    ids = set()
    async with pool.acquire() as conn:
        for _ in range(n):
            delivery = await outbox.emit_test(conn, endpoint_id, publisher_id)
            ids.add(
                str(
                    await conn.fetchval(
                        "SELECT event_id FROM postback_deliveries WHERE id = $1", delivery
                    )
                )
            )
    return ids


async def test_receiver_down_then_up_loses_nothing(
    settings: Settings, pool: Pool, receiver: Receiver
) -> None:
    async with pool.acquire() as conn:
        publisher_id = await new_publisher(conn)
    endpoint = await new_endpoint(pool, publisher_id, receiver.url("/pb?eid={event_id}"))
    await receiver.stop()
    ids = await _test_events(pool, endpoint, publisher_id, 40)
    async with running_sender(sender_settings(settings), pool):
        await asyncio.sleep(1.0)  # refused, retried, refused...
        assert receiver.requests == []
        await receiver.start()
        assert await settled(pool, endpoint, within=10) == {"delivered": 40}
    assert receiver.distinct == ids
    assert receiver.counts.most_common(1)[0][1] == 1
    errors = await pool.fetch(
        """SELECT a.error FROM postback_attempts a JOIN postback_deliveries d
           ON d.id = a.delivery_id WHERE d.endpoint_id = $1 AND a.outcome = 'retry'""",
        endpoint,
    )
    assert errors and all(e["error"].startswith("could not connect") for e in errors)


async def test_a_slow_receiver_is_bounded_and_holds_up_no_other(
    settings: Settings, pool: Pool, receiver: Receiver
) -> None:
    slow = Receiver()
    await slow.start()
    slow.delay_s = 5.0
    try:
        async with pool.acquire() as conn:
            publisher_id = await new_publisher(conn)
        slow_endpoint = await new_endpoint(pool, publisher_id, slow.url("/s?eid={event_id}"))
        fast_endpoint = await new_endpoint(pool, publisher_id, receiver.url("/f?eid={event_id}"))
        await _test_events(pool, slow_endpoint, publisher_id, 20)
        ids = await _test_events(pool, fast_endpoint, publisher_id, 20)
        started = time.monotonic()
        async with running_sender(sender_settings(settings, postback_timeout_ms=800), pool):
            await receiver.wait_for(20, within=5)
            fast_took = time.monotonic() - started
            await asyncio.sleep(1.0)
        elapsed = time.monotonic() - started
        assert fast_took < 0.8  # not behind the slow endpoint's timeouts
        assert receiver.distinct == ids
        tries = await pool.fetch(
            """SELECT a.latency_ms, a.error FROM postback_attempts a
               JOIN postback_deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = $1""",
            slow_endpoint,
        )
        assert tries and all(t["error"] == "no answer within 0.8 s" for t in tries)
        assert all(700 <= t["latency_ms"] < 1200 for t in tries)
        # At most 4 at once (CLICKTRACK_POSTBACK_ENDPOINT_CONCURRENCY), each 0.8 s at most.
        assert len(tries) <= 4 * math.ceil(elapsed / 0.8)
    finally:
        await slow.stop()


async def test_loopback_is_refused_by_default(
    settings: Settings, pool: Pool, receiver: Receiver
) -> None:
    async with pool.acquire() as conn:
        publisher_id = await new_publisher(conn)
    endpoint = await new_endpoint(pool, publisher_id, receiver.url("/pb?eid={event_id}"))
    await _test_events(pool, endpoint, publisher_id, 1)
    refusing = sender_settings(settings, postback_allow_networks=(), postback_give_up_s=0.3)
    async with running_sender(refusing, pool):
        assert await settled(pool, endpoint, within=5) == {"failed": 1}
    assert receiver.requests == []
    errors = await pool.fetch(
        """SELECT a.error FROM postback_attempts a JOIN postback_deliveries d
           ON d.id = a.delivery_id WHERE d.endpoint_id = $1""",
        endpoint,
    )
    assert {e["error"] for e in errors} == {"destination 127.0.0.1 is a loopback address"}


@pytest.mark.parametrize(
    ("status", "answer", "final"),
    [
        (200, b"ok\x00", "delivered"),
        (500, b"oops\x00 \xff\xfe", "failed"),
        (200, b"\x00" * 2000, "delivered"),
    ],
)
async def test_answers_postgres_cannot_store_are_recorded_once(
    settings: Settings,
    pool: Pool,
    receiver: Receiver,
    status: int,
    answer: bytes,
    final: str,
) -> None:
    """A NUL byte, or bytes that are not UTF-8, in a receiver's answer: the attempt is
    recorded with them replaced (U+FFFD), and the event is not sent again."""
    receiver.status, receiver.answer = status, answer
    async with pool.acquire() as conn:
        publisher_id = await new_publisher(conn)
    endpoint = await new_endpoint(pool, publisher_id, receiver.url("/pb?eid={event_id}"))
    ids = await _test_events(pool, endpoint, publisher_id, 1)
    async with running_sender(sender_settings(settings, postback_give_up_s=0.3), pool):
        assert await settled(pool, endpoint, within=10) == {final: 1}
    if final == "delivered":
        assert receiver.counts == {next(iter(ids)): 1}
    tries = await pool.fetch(
        """SELECT a.response FROM postback_attempts a JOIN postback_deliveries d
           ON d.id = a.delivery_id WHERE d.endpoint_id = $1""",
        endpoint,
    )
    expected = answer[:1024].decode("utf-8", "replace").replace("\x00", "\ufffd")
    assert tries and {t["response"] for t in tries} == {expected}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"url": "https://t.example.com/pb?x={clickid}"}, "unknown macro {clickid}"),
        ({"url": "ftp://t.example.com/pb"}, "must start with https:// or http://"),
        ({"url": "https://{af}.example.com/pb"}, "not in the host"),
        ({"url": "https://t.example.com/" + "a" * 2048}, "at most 2048 characters"),
        ({"url": "https://bad_host!.example.com/"}, "not a valid domain name"),
        ({"url": "https://t.example.com/pb?x={af"}, "does not enclose a macro"),
        ({"url": "https://u:p@t.example.com/pb"}, "user name or password"),
        ({"kind": "webhook", "url": "https://t.example.com/h?x={af}"}, "takes no macros"),
        ({"events": ["order_shipped"]}, "unknown event 'order_shipped'"),
        # Hosts the sender would never connect to, refused when written (the default rules).
        ({"url": "http://10.0.0.5/pb"}, "destination 10.0.0.5 is a private address"),
        ({"url": "http://169.254.169.254/latest"}, "is a cloud metadata address"),
        ({"url": "http://[::1]:8080/pb"}, "destination ::1 is a loopback address"),
        ({"url": "http://localhost:8080/pb"}, "destination 127.0.0.1 is a loopback address"),
        ({"url": "http://api.localhost/pb"}, "is a loopback address"),
        ({"url": "https://[::ffff:192.168.1.9]/pb"}, "is a private address"),
        ({"kind": "webhook", "url": "http://127.0.0.1:9/h"}, "the sender would refuse"),
    ],
)
async def test_endpoints_are_checked_on_write(
    app_client: httpx.AsyncClient, pool: Pool, admin_key: str, body: dict[str, Any], words: str
) -> None:
    async with pool.acquire() as conn:
        publisher_id = await new_publisher(conn)
    sent = {
        "kind": "postback",
        "url": "https://t.example.com/pb?cid={click_id}",
        "events": ["order_completed"],
        "publisher_id": publisher_id,
        **body,
    }
    response = await app_client.post(
        "/api/v1/postbacks/endpoints", json=sent, headers=bearer(admin_key)
    )
    assert response.status_code == 422, response.text
    assert words in response.json()["message"], response.json()


@pytest.fixture
async def loopback_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app of an operator who allows the loopback receiver as a destination."""
    async with app_on(sender_settings(settings)) as client:
        yield client


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        ({}, "nothing to change"),
        ({"url": None}, "url cannot be null"),
        ({"events": None, "active": True}, "events cannot be null"),
        ({"url": "http://192.168.0.10/pb"}, "is a private address"),
    ],
)
async def test_a_patch_that_changes_nothing_is_said(
    app_client: httpx.AsyncClient,
    pool: Pool,
    admin_key: str,
    patch: dict[str, Any],
    words: str,
) -> None:
    async with pool.acquire() as conn:
        publisher_id = await new_publisher(conn)
    endpoint = await new_endpoint(pool, publisher_id, "https://t.example.com/pb?e={event_id}")
    before = await pool.fetchrow("SELECT * FROM postback_endpoints WHERE id = $1", endpoint)
    path = f"/api/v1/postbacks/endpoints/{endpoint}"
    refused = await app_client.patch(path, json=patch, headers=bearer(admin_key))
    assert refused.status_code == 422, refused.text
    assert words in refused.json()["message"]
    same = await app_client.patch(path, json={"active": True}, headers=bearer(admin_key))
    assert same.status_code == 200, same.text
    after = await pool.fetchrow("SELECT * FROM postback_endpoints WHERE id = $1", endpoint)
    assert after == before  # not even updated_at
    audited = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE target_kind = 'postback_endpoint' AND target_id = $1",
        str(endpoint),
    )
    assert audited == 0


async def test_the_log_replays_and_test_events(
    loopback_client: httpx.AsyncClient,
    settings: Settings,
    pool: Pool,
    admin_key: str,
    receiver: Receiver,
) -> None:
    async with pool.acquire() as conn:
        publisher_id = await new_publisher(conn)
    key = (
        await loopback_client.post(
            f"/api/v1/publishers/{publisher_id}/api-keys", json={}, headers=bearer(admin_key)
        )
    ).json()["key"]
    made = await loopback_client.post(
        "/api/v1/postbacks/endpoints",
        json={"kind": "webhook", "url": receiver.url(), "events": ["order_completed"]},
        headers=bearer(key),
    )
    endpoint = made.json()["id"]
    receiver.status = 500
    receiver.answer = b"x" * 5000
    tested = await loopback_client.post(
        f"/api/v1/postbacks/endpoints/{endpoint}/test", headers=bearer(key)
    )
    assert tested.status_code == 202, tested.text
    fails = sender_settings(settings, postback_give_up_s=0.2)
    async with running_sender(fails, pool):
        await settled(pool, endpoint, within=5)
    log = await loopback_client.get(
        "/api/v1/postbacks/deliveries", params={"status": "failed"}, headers=bearer(key)
    )
    assert log.status_code == 200, log.text
    [item] = log.json()["items"]
    assert item["event"] == "test" and item["last_status_code"] == 500
    first = item["tries"][0]
    assert first["status_code"] == 500 and len(first["response"]) == 1024
    assert first["error"] == "answered 500"
    receiver.status = 200
    again = await loopback_client.post(
        f"/api/v1/postbacks/deliveries/{item['id']}/replay", headers=bearer(key)
    )
    assert again.json()["status"] == "pending"
    many = await loopback_client.post("/api/v1/postbacks/replay", json={}, headers=bearer(key))
    assert many.json() == {"replayed": 0}  # the one failed delivery is pending already
    async with running_sender(sender_settings(settings), pool):
        assert await settled(pool, endpoint, within=5) == {"delivered": 1}
    assert len(receiver.distinct) == 1  # one event id, however many attempts
    other = await loopback_client.get(
        "/api/v1/postbacks/deliveries",
        params={"publisher_id": publisher_id + 1000},
        headers=bearer(key),
    )
    assert other.status_code == 404


async def test_an_order_attributed_later_is_told_then(pool: Pool, receiver: Receiver) -> None:
    """Its click was not stored yet when the order came: the reattribution that ties it
    queues its events, in its own transaction."""
    async with pool.acquire() as conn:
        publisher_id = await new_publisher(conn)
        link = await new_link(conn, publisher_id)
        merchant_id, _ = await new_merchant(conn)
    await new_endpoint(pool, publisher_id, receiver.url(TEMPLATE), events=ALL_EVENTS)
    placed = datetime.now(UTC) - timedelta(hours=1)
    click = uuid7_at(placed - timedelta(minutes=1))
    report = OrderReport(
        "L-1",
        str(click),
        placed,
        Decimal("10.00"),
        "USD",
        "home-garden",
        False,
        OrderStatus.completed,
        placed,
    )
    async with pool.acquire() as conn:
        await record_postback(conn, merchant_id, report)
        assert await outbox_count(pool, publisher_id) == 0  # not attributed: nothing to tell
        await add_click(conn, link, placed - timedelta(minutes=1), click_id=click)
        assert await reattribute(conn) >= 1
    events = await pool.fetch(
        "SELECT event FROM outbox_events WHERE publisher_id = $1 ORDER BY id", publisher_id
    )
    assert sorted(e["event"] for e in events) == ["order_attributed", "order_completed"]


async def outbox_count(pool: Pool, publisher_id: int) -> int:
    found: int = await pool.fetchval(
        "SELECT count(*) FROM outbox_events WHERE publisher_id = $1", publisher_id
    )
    return found


async def test_endpoint_changes_are_audited_without_the_secret(
    app_client: httpx.AsyncClient, pool: Pool, admin_key: str
) -> None:
    async with pool.acquire() as conn:
        publisher_id = await new_publisher(conn)
    made = await app_client.post(
        "/api/v1/postbacks/endpoints",
        json={
            "kind": "webhook",
            "url": "https://hooks.example.com/h",
            "events": ["order_refunded"],
            "publisher_id": publisher_id,
        },
        headers=bearer(admin_key),
    )
    endpoint = made.json()
    rotated = await app_client.post(
        f"/api/v1/postbacks/endpoints/{endpoint['id']}/rotate-secret", headers=bearer(admin_key)
    )
    assert rotated.json()["secret"] != endpoint["secret"]
    disabled = await app_client.patch(
        f"/api/v1/postbacks/endpoints/{endpoint['id']}",
        json={"active": False},
        headers=bearer(admin_key),
    )
    assert disabled.json()["active"] is False
    listed = await app_client.get(
        "/api/v1/postbacks/endpoints",
        params={"publisher_id": publisher_id},
        headers=bearer(admin_key),
    )
    assert "secret" not in listed.json()["items"][0]
    entries = await pool.fetch(
        "SELECT action, before::text AS b, after::text AS a FROM audit_log"
        " WHERE target_kind = 'postback_endpoint' AND target_id = $1 ORDER BY id",
        str(endpoint["id"]),
    )
    assert [e["action"] for e in entries] == [
        "postback_endpoint.create",
        "postback_endpoint.rotate_secret",
        "postback_endpoint.update",
    ]
    for entry in entries:
        for secret in (endpoint["secret"], rotated.json()["secret"]):
            assert secret not in (entry["a"] or "") and secret not in (entry["b"] or "")


async def test_a_filter_on_another_publishers_endpoint_is_not_found(
    app_client: httpx.AsyncClient, pool: Pool, admin_key: str
) -> None:
    async with pool.acquire() as conn:
        mine, theirs = await new_publisher(conn), await new_publisher(conn)
    their_endpoint = await new_endpoint(pool, theirs, "https://t.example.com/pb?e={event_id}")
    for endpoint_id in (their_endpoint, 999_999_999):
        listed = await app_client.get(
            "/api/v1/postbacks/deliveries",
            params={"publisher_id": mine, "endpoint_id": endpoint_id},
            headers=bearer(admin_key),
        )
        assert listed.status_code == 404, listed.text
        assert f"has no endpoint {endpoint_id}" in listed.json()["message"]
        replayed = await app_client.post(
            "/api/v1/postbacks/replay",
            json={"publisher_id": mine, "endpoint_id": endpoint_id},
            headers=bearer(admin_key),
        )
        assert replayed.status_code == 404, replayed.text
