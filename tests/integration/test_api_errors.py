"""Validation errors in plain words: malformed JSON, no JSON object, patterns, unknown fields;
an order looked up by the merchant's order id."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.core.db import Pool
from tests.integration.test_api import bearer, new_publisher, new_publisher_key
from tests.integration.test_postback import NOW, Shop, order_ref
from tests.support import orders
from tests.support.orders import add_click, new_link, new_merchant, order_body

LINKS = "/api/v1/links"


@pytest.fixture
async def publisher_key(app_client: httpx.AsyncClient, admin_key: str) -> str:
    return await new_publisher_key(
        app_client, admin_key, await new_publisher(app_client, admin_key)
    )


@pytest.fixture
async def shop(pool: Pool) -> Shop:
    async with pool.acquire() as conn:
        merchant_id, secret = await new_merchant(conn)
        publisher_id = await orders.new_publisher(conn)
        link = await new_link(conn, publisher_id)
    return Shop(merchant_id, secret, publisher_id, link)


def refused(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == "invalid"
    return body


async def test_malformed_json_names_the_character(
    app_client: httpx.AsyncClient, publisher_key: str
) -> None:
    body = refused(
        await app_client.post(
            LINKS,
            content=b'{"destination": "https://example.com/", ',
            headers={**bearer(publisher_key), "content-type": "application/json"},
        )
    )
    message = "the body is not valid JSON (at character 40: Expecting property name enclosed in "
    assert body["message"] == message + "double quotes)"
    assert body["details"] == [{"field": "body", "problem": body["message"]}]


@pytest.mark.parametrize(
    "sent",
    [
        {"content": b'{"destination": "https://example.com/"}'},  # no Content-Type
        {"content": b'{"destination": "https://example.com/"}', "ctype": "text/plain"},
        {"content": b"[1, 2]", "ctype": "application/json"},
        {"content": b'"https://example.com/"', "ctype": "application/json"},
        {"content": b""},  # no body at all
    ],
)
async def test_a_body_that_is_no_json_object(
    app_client: httpx.AsyncClient, publisher_key: str, sent: dict[str, Any]
) -> None:
    headers = bearer(publisher_key)
    if "ctype" in sent:
        headers["content-type"] = sent["ctype"]
    body = refused(await app_client.post(LINKS, content=sent["content"], headers=headers))
    assert body["message"] == "send a JSON object with Content-Type: application/json"
    assert body["details"] == [{"field": "body", "problem": body["message"]}]


@pytest.mark.parametrize(
    ("method", "path", "sent", "message"),
    [
        ("post", LINKS, {"destination": "https://example.com/", "code": "bad-code"},
         "body.code: must be 1 to 32 letters or digits"),
        ("get", "/api/v1/orders?af=a%0Ab", None,
         "query.af: must not contain control or invisible characters"),
        ("get", "/api/v1/reports/traffic?link=no-such", None,
         "query.link: must be 1 to 32 letters or digits"),
        ("get", "/api/v1/reports/traffic?group_by=week", None,
         "query.group_by: must be dimensions among day, link, af, cn, cv, dp, country, device, "
         "browser, os, referrer, language, browser_version, os_version, separated by commas"),
        ("get", "/api/v1/reports/income?from=2019-5", None,
         "query.from: must be a month as YYYY-MM"),
    ],
)  # fmt: skip
async def test_patterns_are_described_in_words(
    app_client: httpx.AsyncClient,
    publisher_key: str,
    method: str,
    path: str,
    sent: dict[str, Any] | None,
    message: str,
) -> None:
    response = await app_client.request(method, path, json=sent, headers=bearer(publisher_key))
    body = refused(response)
    assert body["message"] == message
    field, problem = message.split(": ", 1)
    assert body["details"] == [{"field": field, "problem": problem}]


async def test_a_postback_category_pattern_in_words(
    app_client: httpx.AsyncClient,
    shop: Shop,
) -> None:
    data = json.loads(order_body(order_ref(), "x", NOW - timedelta(days=1), "1"))
    data["category"] = "Computer & Office"
    body = refused(await shop.post(app_client, json.dumps(data).encode()))
    assert body["message"] == (
        "body.category: must be lowercase slugs (letters, digits, single hyphens) with '/' "
        "between levels, like computer-office/tablets"
    )


@pytest.mark.parametrize(
    ("sent", "message"),
    [
        (b"{not json", "the body is not valid JSON (at character 1: Expecting property name "
         "enclosed in double quotes)"),
        (b"[]", "send a JSON object with Content-Type: application/json"),
    ],
)  # fmt: skip
async def test_postback_body_errors_read_as_the_apis(
    app_client: httpx.AsyncClient,
    shop: Shop,
    sent: bytes,
    message: str,
) -> None:
    assert refused(await shop.post(app_client, sent))["message"] == message


async def test_an_unknown_postback_field_is_refused(
    app_client: httpx.AsyncClient,
    pool: Pool,
    shop: Shop,
) -> None:
    ref = order_ref()
    data = json.loads(order_body(ref, "x", NOW - timedelta(days=1), "1"))
    data["status_tme"] = data["order_time"]
    body = refused(await shop.post(app_client, json.dumps(data).encode()))
    assert body["message"] == "body.status_tme: unknown field"
    assert await pool.fetchval("SELECT count(*) FROM orders WHERE order_ref = $1", ref) == 0


@pytest.mark.parametrize(
    ("method", "path", "sent", "field"),
    [
        ("post", LINKS, {"destination": "https://example.com/", "colour": "red"}, "colour"),
        ("patch", f"{LINKS}/Unknown1", {"status": "disabled", "expires": None}, "expires"),
        ("post", "/api/v1/money/withdrawals", {"amont": "10.00"}, "amont"),
    ],
)
async def test_unknown_fields_are_refused(
    app_client: httpx.AsyncClient,
    pool: Pool,
    publisher_key: str,
    method: str,
    path: str,
    sent: dict[str, Any],
    field: str,
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM links")
    response = await app_client.request(method, path, json=sent, headers=bearer(publisher_key))
    body = refused(response)
    assert body["message"] == f"body.{field}: unknown field"
    assert body["details"] == [{"field": f"body.{field}", "problem": "unknown field"}]
    assert await pool.fetchval("SELECT count(*) FROM links") == before


@pytest.mark.parametrize(
    ("path", "sent", "field"),
    [
        ("/api/v1/publishers", {"name": "P", "network": 1}, "network"),
        ("/api/v1/withdrawals/1/pay", {"reference": "R1", "note": "x"}, "note"),
        ("/api/v1/withdrawals/1/reject", {"reason": "why", "by": "me"}, "by"),
        ("/api/v1/orders/1/disqualify", {"reason": "fraud", "notify": True}, "notify"),
    ],
)
async def test_unknown_fields_of_admin_bodies_are_refused(
    app_client: httpx.AsyncClient, admin_key: str, path: str, sent: dict[str, Any], field: str
) -> None:
    body = refused(await app_client.post(path, json=sent, headers=bearer(admin_key)))
    assert body["message"] == f"body.{field}: unknown field"


async def test_a_missing_field_is_required(
    app_client: httpx.AsyncClient, publisher_key: str
) -> None:
    body = refused(
        await app_client.post(LINKS, json={"code": "abc"}, headers=bearer(publisher_key))
    )
    assert body["message"] == "body.destination: required"


async def _order(app_client: httpx.AsyncClient, pool: Pool, shop: Shop, ref: str) -> int:
    async with pool.acquire() as conn:
        click_id = await add_click(conn, shop.link, NOW - timedelta(hours=2))
    sent = order_body(ref, click_id, NOW - timedelta(hours=1), "10.00")
    assert (await shop.post(app_client, sent)).status_code == 200
    found: int = await pool.fetchval(
        "SELECT id FROM orders WHERE merchant_id = $1 AND order_ref = $2", shop.merchant_id, ref
    )
    return found


async def test_an_order_by_the_merchants_order_id(
    app_client: httpx.AsyncClient,
    pool: Pool,
    admin_key: str,
    shop: Shop,
) -> None:
    ref = f"A-{order_ref()}"
    order_id = await _order(app_client, pool, shop, ref)
    key = await new_publisher_key(app_client, admin_key, shop.publisher_id)
    by_ref = await app_client.get(f"/api/v1/orders/{ref}", headers=bearer(key))
    assert by_ref.status_code == 200, by_ref.text
    assert by_ref.json()["id"] == order_id and by_ref.json()["order_id"] == ref
    by_id = await app_client.get(f"/api/v1/orders/{order_id}", headers=bearer(key))
    assert by_id.json() == by_ref.json()

    stranger = await new_publisher_key(
        app_client, admin_key, await new_publisher(app_client, admin_key, "Other")
    )
    hidden = await app_client.get(f"/api/v1/orders/{ref}", headers=bearer(stranger))
    assert hidden.status_code == 404 and hidden.json()["message"] == "no such order"
    for path in (f"/api/v1/orders/{ref}x", "/api/v1/orders/99999999999999999999"):
        missing = await app_client.get(path, headers=bearer(key))
        assert missing.status_code == 404 and missing.json()["message"] == "no such order"


async def test_an_order_id_two_merchants_share(
    app_client: httpx.AsyncClient,
    pool: Pool,
    admin_key: str,
    shop: Shop,
) -> None:
    ref = f"A-{order_ref()}"
    first = await _order(app_client, pool, shop, ref)
    async with pool.acquire() as conn:
        merchant_id, secret = await new_merchant(conn)
        link = await new_link(conn, shop.publisher_id)
    second = await _order(app_client, pool, Shop(merchant_id, secret, shop.publisher_id, link), ref)
    key = await new_publisher_key(app_client, admin_key, shop.publisher_id)
    answer = await app_client.get(f"/api/v1/orders/{ref}", headers=bearer(key))
    assert answer.status_code == 409, answer.text
    assert answer.json()["message"] == (
        f"2 orders of different merchants have the order id {ref!r}; "
        f"ask for one by its id: {first}, {second}"
    )


async def test_pydantic_bounds_read_in_words(
    app_client: httpx.AsyncClient, admin_key: str, publisher_key: str
) -> None:
    """pydantic's own English ("Input should be less than or equal to 3600", "String should
    have at least 1 character") never reaches a caller: the rule in words, the field named."""
    keys = (await app_client.get("/api/v1/api-keys", headers=bearer(publisher_key))).json()
    too_long = await app_client.post(
        f"/api/v1/api-keys/{keys['items'][0]['id']}/rotate",
        json={"overlap_seconds": 3601},
        headers=bearer(publisher_key),
    )
    assert refused(too_long)["message"] == "body.overlap_seconds: must be at most 3600"
    empty_host = await app_client.post(
        "/api/v1/merchants", json={"name": "Shop", "hosts": [""]}, headers=bearer(admin_key)
    )
    assert refused(empty_host)["message"] == "body.hosts.0: must not be empty"
    no_limit = await app_client.get(
        "/api/v1/links", params={"limit": "many"}, headers=bearer(publisher_key)
    )
    assert refused(no_limit)["message"] == "query.limit: must be a whole number"
    bad_status = await app_client.get(
        "/api/v1/links", params={"status": "gone"}, headers=bearer(publisher_key)
    )
    assert refused(bad_status)["message"] == (
        "query.status: must be one of 'active', 'disabled' or 'archived'"
    )
