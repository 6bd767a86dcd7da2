"""Bad input, second pass: each defect a new user found on a fresh clone, with its right
answer. Bad input always gets a clear 4xx in plain words (JSON for the API, an HTML page on
/dashboard), never a 500 nor pydantic's English."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.accounts.apikeys import MAX_KEY_NAME, ApiKeyError, Role, create_key
from app.core.db import Pool
from app.dashboard import inputs, labels
from app.errors import InvalidInput
from app.links import model as link_model
from app.money.plan import DEFAULT_PLAN_FILE, PlanError, read_plan_file
from tests.integration.test_api import bearer, new_publisher, new_publisher_key
from tests.integration.test_dashboard import sign_in
from tests.integration.test_postback import NOW, Shop, order_ref, shop
from tests.support.orders import order_body, uuid7_at

__all__ = ["shop"]  # the postback's fixture, used here

YEARS = "must be in the years 1970 to 2999 (UTC)"
PYDANTIC_ENGLISH = ("Field required", "Input should", "Extra inputs", "Tuple should", "Value error")


def refused(response: httpx.Response, message: str, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["message"] == message, body
    assert isinstance(body["details"], list)
    return body


def no_pydantic_english(text: str) -> None:
    for words in PYDANTIC_ENGLISH:
        assert words not in text, text


# 1. JSON nested past Python's recursion limit: the postback and every other body.

DEEP = b"[" * 5000 + b"]" * 5000
TOO_DEEP = "the body is not valid JSON (nested too deep)"


async def test_a_deeply_nested_postback_is_422_in_words(
    app_client: httpx.AsyncClient, shop: Shop
) -> None:
    refused(await shop.post(app_client, DEEP), TOO_DEEP)


async def test_a_deeply_nested_body_is_422_in_words_everywhere(
    app_client: httpx.AsyncClient, admin_key: str
) -> None:
    headers = {**bearer(admin_key), "Content-Type": "application/json"}
    refused(await app_client.post("/api/v1/publishers", content=DEEP, headers=headers), TOO_DEEP)
    page = await app_client.put("/api/v1/plans/2027-01-10", content=DEEP, headers=headers)
    refused(page, TOO_DEEP)


# 2. A wrong method on the dashboard: its own HTML page, 405 with Allow.


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/dashboard", "GET"),
        ("DELETE", "/dashboard", "GET"),
        ("PATCH", "/dashboard", "GET"),
        ("POST", "/dashboard", "GET"),
        ("PUT", "/dashboard/login", "GET, POST"),
        ("PUT", "/dashboard/links", "GET"),
        ("PUT", "/dashboard/withdrawals", "GET, POST"),
        ("PUT", "/dashboard/export/income.csv", "GET"),
        ("PUT", "/dashboard/logout", "POST"),
    ],
)
async def test_a_wrong_method_on_the_dashboard_answers_its_page(
    app_client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    page = await app_client.request(method, path)
    assert page.status_code == 405, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["allow"] == allow
    assert f"does not take {method} requests" in page.text or "Sign out" in page.text


async def test_following_the_sign_out_address_says_it_is_a_button(
    app_client: httpx.AsyncClient,
) -> None:
    page = await app_client.get("/dashboard/logout")
    assert page.status_code == 405
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["allow"] == "POST"
    assert "Sign out button" in page.text
    assert "no such dashboard page" not in page.text


async def test_an_unknown_dashboard_page_is_still_404(app_client: httpx.AsyncClient) -> None:
    page = await app_client.put("/dashboard/nothing-here")
    assert page.status_code == 404
    assert "there is no such dashboard page" in page.text


# 3. pydantic's English never shows: plans (API and files), finite numbers.


async def test_a_plan_without_its_fields_says_so_in_words(
    app_client: httpx.AsyncClient, admin_key: str
) -> None:
    answer = await app_client.put("/api/v1/plans/2027-01-10", json={}, headers=bearer(admin_key))
    assert answer.status_code == 422, answer.text
    message = answer.json()["message"]
    no_pydantic_english(message)
    assert "name: required" in message


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"minimum_rate": "many"}, "minimum_rate: must be a decimal number like 12.50"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"incentive_tiers": []}, "incentive_tiers: must have at least 1 item"),
        ({"minimum_rate": 1e400}, "minimum_rate: must be a finite number"),
    ],
)
async def test_bad_plan_values_say_so_in_words(
    app_client: httpx.AsyncClient, admin_key: str, change: dict[str, Any], words: str
) -> None:
    plan = read_plan_file(DEFAULT_PLAN_FILE).model_dump(mode="json")
    plan = {k: v for k, v in plan.items() if k not in ("ladder", "effective_from")}
    plan.update(change)
    answer = await app_client.put(
        "/api/v1/plans/2027-01-10",
        content=json.dumps(plan).replace("Infinity", "1e400"),
        headers={**bearer(admin_key), "Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    no_pydantic_english(answer.json()["message"])
    assert words in answer.json()["message"]


def test_a_bad_plan_file_says_so_in_the_apis_words(tmp_path: Path) -> None:
    bad = tmp_path / "plan.toml"
    bad.write_text('effective_from = "2027-01-10"\nminimum_rate = "x"\nincentive_tiers = []\n')
    with pytest.raises(PlanError) as caught:
        read_plan_file(bad)
    message = caught.value.describe()
    no_pydantic_english(message)
    assert "name: required" in message
    assert "incentive_tiers: must have at least 1 item" in message


async def test_numbers_too_large_for_a_float_are_refused_in_words(
    app_client: httpx.AsyncClient, admin_key: str, shop: Shop, pool: Pool
) -> None:
    publisher_id = await new_publisher(app_client, admin_key)
    async with pool.acquire() as conn:
        _, key = await create_key(conn, Role.publisher, publisher_id)
    headers = {**bearer(key), "Content-Type": "application/json"}
    answer = await app_client.post(
        "/api/v1/money/withdrawals", content=b'{"amount": 1e400}', headers=headers
    )
    refused(answer, "body.amount: must be a finite number (1e400 and the like are too large)")
    answer = await app_client.post(
        "/api/v1/publishers",
        content=b'{"name": "x", "network_id": 1e400}',
        headers={**bearer(admin_key), "Content-Type": "application/json"},
    )
    refused(answer, "body.network_id: must be a whole number")
    data = json.loads(order_body(order_ref(), str(uuid7_at(NOW)), NOW - timedelta(days=1), "1"))
    body = json.dumps({**data, "amount": 0}).replace('"amount": 0', '"amount": 1e400')
    answer = await shop.post(app_client, body.encode())
    refused(answer, "body.amount: must be a finite number (1e400 and the like are too large)")


# 4. A period blamed on its own name.


async def test_a_bad_period_names_from_or_to(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool
) -> None:
    publisher_id = await new_publisher(app_client, admin_key)
    key = await new_publisher_key(app_client, admin_key, publisher_id)
    for name in ("from", "to"):
        answer = await app_client.get(
            f"/api/v1/reports/income.csv?{name}=2026-13", headers=bearer(key)
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["message"].startswith(f"{name}: "), answer.text
    async with pool.acquire() as conn:
        _, dash_key = await create_key(conn, Role.publisher, publisher_id)
    await sign_in(app_client, dash_key)
    page = await app_client.get("/dashboard/export/income.csv?to=2026-13")
    assert page.status_code == 400
    assert "to: " in page.text and "period:" not in page.text


# 5. Nothing silently accepted: repeats, duplicate keys, type confusion, a body not taken.


async def test_a_single_valued_query_parameter_given_twice_is_refused(
    app_client: httpx.AsyncClient, admin_key: str
) -> None:
    publisher_id = await new_publisher(app_client, admin_key)
    key = await new_publisher_key(app_client, admin_key, publisher_id)
    refused(
        await app_client.get("/api/v1/links?limit=5&limit=6", headers=bearer(key)),
        "'limit' given twice",
    )
    listed = await app_client.get(
        "/api/v1/orders?status=completed&status=refunded", headers=bearer(key)
    )
    assert listed.status_code == 200, listed.text  # a list parameter may repeat


async def test_the_dashboard_refuses_a_repeated_parameter(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool
) -> None:
    publisher_id = await new_publisher(app_client, admin_key)
    async with pool.acquire() as conn:
        _, key = await create_key(conn, Role.publisher, publisher_id)
    await sign_in(app_client, key)
    page = await app_client.get("/dashboard?from=2026-01-01&from=2026-01-02")
    assert page.status_code == 400
    assert "given twice" in page.text
    assert (await app_client.get("/dashboard?utm_source=a&utm_source=b")).status_code == 200


async def test_a_json_key_given_twice_is_refused(
    app_client: httpx.AsyncClient, admin_key: str, shop: Shop
) -> None:
    headers = {**bearer(admin_key), "Content-Type": "application/json"}
    answer = await app_client.post(
        "/api/v1/publishers", content=b'{"name":"x","name":"y"}', headers=headers
    )
    refused(answer, "'name' given twice")
    refused(
        await shop.post(app_client, b'{"order_id":"a","order_id":"b"}'), "'order_id' given twice"
    )


async def test_booleans_and_integers_are_strict(
    app_client: httpx.AsyncClient, admin_key: str, shop: Shop, pool: Pool
) -> None:
    async with pool.acquire() as conn:
        key_id, _ = await create_key(conn, Role.admin, None, "to rotate")
    answer = await app_client.post(
        f"/api/v1/api-keys/{key_id}/rotate",
        json={"overlap_seconds": True},
        headers=bearer(admin_key),
    )
    refused(answer, "body.overlap_seconds: must be a whole number")
    data = json.loads(order_body(order_ref(), str(uuid7_at(NOW)), NOW - timedelta(days=1), "1"))
    answer = await shop.post(app_client, json.dumps({**data, "new_buyer": "yes"}).encode())
    refused(answer, "body.new_buyer: must be true or false")


async def test_a_call_without_a_body_refuses_one(
    app_client: httpx.AsyncClient, admin_key: str
) -> None:
    answer = await app_client.post(
        "/api/v1/orders/reattribute", json={"bogus": 1}, headers=bearer(admin_key)
    )
    refused(answer, "this call takes no body")
    answer = await app_client.post("/api/v1/orders/reattribute", json={}, headers=bearer(admin_key))
    assert answer.status_code == 200, answer.text  # an empty object asks for nothing


@pytest.mark.parametrize(
    "text",
    ["1,2,3", "1e5", "\u0661\u0662\u0663", "12,34", "1.2.3", "1,234.5.6", "NaN", "Infinity"],
)
def test_the_dashboard_amount_takes_only_plain_dollars_and_cents(text: str) -> None:
    with pytest.raises(InvalidInput, match="is not an amount"):
        inputs.amount(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [("120", "120.00"), ("1,234.56", "1234.56"), ("US$1,200", "1200.00"), ("$0.5", "0.50")],
)
def test_the_dashboard_amount_reads_usual_amounts(text: str, value: str) -> None:
    assert inputs.amount(text) == Decimal(value)


def test_the_dashboard_amount_refuses_fractions_of_cents() -> None:
    with pytest.raises(InvalidInput, match="at most two decimals"):
        inputs.amount("1.234")


# 6. One bound for every stored time, one wording.


async def test_expiries_have_one_bound_and_one_wording(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool
) -> None:
    publisher_id = await new_publisher(app_client, admin_key)
    key = await new_publisher_key(app_client, admin_key, publisher_id)
    late = "9999-12-31T00:00:00Z"
    answer = await app_client.post(
        "/api/v1/links",
        json={"destination": "https://shop.example.com/", "expires_at": late},
        headers=bearer(key),
    )
    refused(answer, f"body.expires_at: {YEARS}")
    answer = await app_client.post(
        f"/api/v1/publishers/{publisher_id}/api-keys",
        json={"expires_at": late},
        headers=bearer(admin_key),
    )
    refused(answer, f"body.expires_at: {YEARS}")
    async with pool.acquire() as conn:
        with pytest.raises(ApiKeyError, match=re.escape(YEARS)):
            await create_key(conn, Role.admin, None, "late", datetime(3000, 1, 1, tzinfo=UTC))
    with pytest.raises(link_model.LinkError, match=re.escape(YEARS)):
        link_model.check_expiry(datetime(3000, 1, 1, tzinfo=UTC), datetime.now(UTC))


# 7. The small ones.


def test_a_field_is_named_once() -> None:
    for url in ("ftp://shop.example.com/", "https://user:pw@shop.example.com/", "https://x"):
        try:
            link_model.validate_destination(url, ("shop.example.com",))
        except link_model.LinkError as exc:
            assert not exc.message.startswith("destination"), exc.describe()
        else:
            pytest.fail(url)


def test_one_day_is_shown_once() -> None:
    assert labels.days(date(2026, 12, 1), date(2026, 12, 1)) == "1 Dec 2026"
    assert labels.days(date(2026, 11, 1), date(2026, 12, 1)) == "1 Nov \N{EN DASH} 1 Dec 2026"


async def test_key_names_have_one_bound(pool: Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(ApiKeyError, match=f"at most {MAX_KEY_NAME} characters"):
            await create_key(conn, Role.admin, None, "k" * 5000)


async def test_a_network_asking_about_a_stranger_learns_nothing(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool
) -> None:
    made = await app_client.post(
        "/api/v1/publishers", json={"name": "Net", "kind": "network"}, headers=bearer(admin_key)
    )
    assert made.status_code == 201, made.text
    network_id = made.json()["id"]
    stranger = await new_publisher(app_client, admin_key)
    async with pool.acquire() as conn:
        _, key = await create_key(conn, Role.publisher, network_id)
    for asked in (stranger, 2**63 - 1):
        answer = await app_client.get(
            f"/api/v1/reports/income?publisher_id={asked}", headers=bearer(key)
        )
        refused(answer, f"publisher {asked} is not yours or your network's", 404)


async def test_details_are_always_a_list(app_client: httpx.AsyncClient, admin_key: str) -> None:
    answer = await app_client.get("/api/v1/links?bogus=1", headers=bearer(admin_key))
    assert answer.json()["details"] == []
    answer = await app_client.post(
        "/api/v1/publishers", json={"name": ""}, headers=bearer(admin_key)
    )
    assert answer.json()["details"] == [{"field": "body.name", "problem": "must not be empty"}]


async def test_a_body_in_utf16_is_not_utf8(app_client: httpx.AsyncClient, admin_key: str) -> None:
    answer = await app_client.post(
        "/api/v1/publishers",
        content=b"\xff\xfe{}",
        headers={**bearer(admin_key), "Content-Type": "application/json"},
    )
    refused(answer, "the body is not valid JSON (not UTF-8 text: byte 0xff at byte 0)")


def test_every_api_router_reads_bodies_one_way() -> None:
    """Every API router's routes are ``JsonRoute``s (the postback parses its raw body with
    the same ``bodies.parse``)."""
    import importlib
    import pkgutil

    import app.api
    import app.api.reports
    from app.api.bodies import JsonRoute

    for package in (app.api, app.api.reports):
        for found in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{found.name}")
            router = getattr(module, "router", None)
            if router is None or module.__name__ == "app.api.postback":
                continue
            assert router.route_class is JsonRoute, module.__name__
