"""The dashboard's sign-in, session cookie, CSRF and escaping, over HTTP in-process.
(tests/integration/test_dashboard_browser.py drives it in Chromium.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager

from app.accounts.apikeys import Role, create_key
from app.core.db import Pool
from app.dashboard.sessions import COOKIE, LOGIN_CSRF_COOKIE
from app.main import create_app
from app.settings import Settings
from tests.integration.test_money_withdrawals import Clock, clocked_client
from tests.support.accounts import SHANGHAI, Account
from tests.support.orders import at

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def publisher(pool: Pool) -> tuple[int, str]:
    async with pool.acquire() as conn:
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('Dash <b>Blog</b>') RETURNING id"
        )
        _, key = await create_key(conn, Role.publisher, publisher_id)
    return publisher_id, key


async def login_token(client: httpx.AsyncClient) -> str:
    page = await client.get("/dashboard/login")
    assert page.status_code == 200
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    token = await login_token(client)
    return await client.post("/dashboard/login", data={"api_key": key, "csrf": token})


def set_cookie_headers(response: httpx.Response, name: str) -> list[str]:
    return [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]


async def test_signing_in_sets_an_httponly_session_that_never_holds_the_key(
    app_client: httpx.AsyncClient,
    publisher: tuple[int, str],
    redis: aioredis.Redis,
    settings: Settings,
) -> None:
    _, key = publisher
    first = await app_client.get("/dashboard")
    assert first.status_code == 303 and first.headers["location"] == "/dashboard/login"

    page = await app_client.get("/dashboard/login")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    [login_cookie] = set_cookie_headers(page, LOGIN_CSRF_COOKIE)
    assert "HttpOnly" in login_cookie and "SameSite=lax" in login_cookie

    signed_in = await sign_in(app_client, key)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/dashboard"
    [cookie] = set_cookie_headers(signed_in, COOKIE)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # CLICKTRACK_COOKIE_SECURE=false in tests
    assert key not in cookie and key[4:20] not in cookie
    stored = [
        await redis.get(k)
        async for k in redis.scan_iter(match=f"{settings.key_prefix}:dash:*", count=100)
    ]
    assert len(stored) == 1 and stored[0] is not None and key.encode() not in stored[0]

    shown = await app_client.get("/dashboard")
    assert shown.status_code == 200
    assert "Dash &lt;b&gt;Blog&lt;/b&gt;" in shown.text  # escaped
    assert shown.headers["cache-control"] == "no-store"
    assert key not in shown.text


async def test_the_cookie_is_secure_when_configured(
    settings: Settings, publisher: tuple[int, str]
) -> None:
    app = create_app(settings.model_copy(update={"cookie_secure": True}))
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="https://testserver"
        ) as client,
    ):
        signed_in = await sign_in(client, publisher[1])
        [cookie] = set_cookie_headers(signed_in, COOKIE)
        assert "Secure" in cookie


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"api_key": "ctk_nope", "csrf": None}, 401, "not valid"),
        ({"api_key": "KEY", "csrf": "forged.token"}, 403, "expired"),
        ({"api_key": "KEY"}, 403, "expired"),
        ({"api_key": "", "csrf": None}, 401, "not valid"),
    ],
)
async def test_a_bad_sign_in_is_refused(
    app_client: httpx.AsyncClient,
    publisher: tuple[int, str],
    form: dict[str, str | None],
    status: int,
    message: str,
) -> None:
    token = await login_token(app_client)
    data = {k: (publisher[1] if v == "KEY" else token if v is None else v) for k, v in form.items()}
    answer = await app_client.post("/dashboard/login", data=data)
    assert answer.status_code == status
    assert message in answer.text
    assert not set_cookie_headers(answer, COOKIE)


async def test_admin_keys_cannot_use_the_publisher_dashboard(
    app_client: httpx.AsyncClient, admin_key: str
) -> None:
    answer = await sign_in(app_client, admin_key)
    assert answer.status_code == 403 and "publisher keys" in answer.text


async def test_signing_out_needs_the_sessions_token_and_ends_the_session(
    app_client: httpx.AsyncClient, publisher: tuple[int, str]
) -> None:
    await sign_in(app_client, publisher[1])
    page = await app_client.get("/dashboard")
    found = CSRF.search(page.text)
    assert found is not None
    refused = await app_client.post("/dashboard/logout", data={"csrf": "guess"})
    assert refused.status_code == 403
    assert (await app_client.get("/dashboard")).status_code == 200
    out = await app_client.post("/dashboard/logout", data={"csrf": found.group(1)})
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
    assert (await app_client.get("/dashboard")).status_code == 303


async def test_a_tampered_or_revoked_session_signs_out(
    app_client: httpx.AsyncClient, publisher: tuple[int, str], pool: Pool
) -> None:
    await sign_in(app_client, publisher[1])
    value = app_client.cookies.get(COOKIE, path="/dashboard")
    assert value is not None
    session_id, _, mac = value.partition(".")
    app_client.cookies.set(COOKIE, f"{session_id}.{mac[::-1]}", path="/dashboard")
    assert (await app_client.get("/dashboard")).status_code == 303
    app_client.cookies.set(COOKIE, value, path="/dashboard")
    assert (await app_client.get("/dashboard")).status_code == 200
    await pool.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE publisher_id = $1", publisher[0]
    )
    assert (await app_client.get("/dashboard")).status_code == 303


async def test_tracking_strings_are_escaped_and_downloads_need_a_session(
    app_client: httpx.AsyncClient, publisher: tuple[int, str], pool: Pool
) -> None:
    publisher_id, key = publisher
    evil = '<script>alert("x")</script>'
    await pool.execute(
        """INSERT INTO traffic_tracking_days
               (publisher_id, day, link_id, af, clicks, unique_clicks, flagged)
           VALUES ($1, $2, 1, $3, 5, 4, 1)""",
        publisher_id,
        datetime.now(UTC).date(),
        evil,
    )
    assert (await app_client.get("/dashboard/export/orders.csv")).status_code == 303
    await sign_in(app_client, key)
    page = await app_client.get("/dashboard")
    assert evil not in page.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.text
    export = await app_client.get("/dashboard/export/traffic.csv", params={"group_by": "af"})
    assert export.status_code == 200
    assert export.text.splitlines()[0] == (
        '"af","clicks","billable_clicks","unique_clicks","flagged_clicks"'
    )
    assert export.text.splitlines()[1] == '"<script>alert(""x"")</script>",5,4,4,1'
    css = await app_client.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        (
            "/dashboard/export/traffic.csv",
            {"group_by": "<b>week</b>"},
            "group_by: &#x27;&lt;b&gt;week",
        ),
        (
            "/dashboard/export/traffic.csv",
            {"from": "2026-01-10", "to": "2026-01-01"},
            "to: the range ends before it starts",
        ),
        (
            "/dashboard/export/traffic.csv",
            {"group_by": "dp", "from": "2026-01-01", "to": "2026-03-01"},
            "from: the range covers 60 days; at most 31",
        ),
        ("/dashboard/export/orders.csv", {"from": "garbage"}, "from: expected a day"),
        ("/dashboard/export/income.csv", {"bom": "maybe"}, "bom: expected true or false"),
        ("/dashboard", {"to": "2026-02-30"}, "to: expected a day"),
    ],
)
async def test_bad_input_answers_an_html_page_not_the_apis_json(
    app_client: httpx.AsyncClient,
    publisher: tuple[int, str],
    path: str,
    params: dict[str, str],
    message: str,
) -> None:
    assert (await app_client.get(path, params=params)).status_code == 303  # no session yet
    await sign_in(app_client, publisher[1])
    answer = await app_client.get(path, params=params)
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
    assert message in answer.text and "<b>" not in answer.text


# -- the balance card: the withdrawable part, and why or when not --------------------------

BALANCE_CARD = re.compile(r'<div class="card" data-figure="balance">(.*?)</div>', re.S)


def balance_card(page: httpx.Response) -> str:
    assert page.status_code == 200, page.text
    found = BALANCE_CARD.search(page.text)
    assert found is not None
    return found.group(1)


async def test_the_balance_card_shows_what_can_be_withdrawn_and_when(
    settings: Settings, pool: Pool, admin_key: str
) -> None:
    """Periods in Asia/Shanghai. Credits of 80.00 booked 10 April 2019 and 40.00 booked
    10 May: on 15 May 120.00 of balance, 80.00 withdrawable now; at 01:00 on 21 May in
    Shanghai (still the 20th in UTC) no request is taken: the card says until when and when
    the 40.00 becomes withdrawable. A balance of nothing says what a withdrawal needs."""
    shanghai = settings.model_copy(update={"period_timezone": SHANGHAI})
    clock = Clock(at("2019-05-15T04:00:00"))
    async with clocked_client(shanghai, clock) as client:
        account = await Account.open(client, pool, admin_key)
        await account.completed(at("2019-03-15T10:00:00+08:00"), "1000.00")
        await account.close("2019-03")  # 80.00, booked 10 April
        await account.completed(at("2019-04-15T10:00:00+08:00"), "500.00")
        await account.close("2019-04")  # 40.00, booked 10 May
        await sign_in(client, account.key)

        card = balance_card(await client.get("/dashboard"))
        assert "<strong>US$120.00</strong>" in card
        assert 'data-amount="80.00" data-can-withdraw="true">US$80.00 withdrawable now' in card
        assert "A withdrawal can be requested now (until day 20 of the month" in card
        api = await account.get("/api/v1/money/balance")
        assert (api["withdrawable"], api["can_withdraw"]) == ("80.00", True)

        clock.now = at("2019-05-20T17:00:00")  # 21 May, 01:00 in Shanghai
        card = balance_card(await client.get("/dashboard"))
        assert 'data-can-withdraw="false">US$80.00 withdrawable now' in card
        assert 'data-next-request-day="2019-06-01"' in card
        assert (
            "No withdrawal now: withdrawals can be requested on days 1 to 20 of a month; the "
            "next request day is 1 June 2019; US$40.00 booked this month becomes withdrawable "
            "on 1 June 2019." in card
        )
        api = await account.get("/api/v1/money/balance")
        assert (api["can_withdraw"], api["withdrawal"]["next_request_day"]) == (
            False,
            "2019-06-01",
        )

        clock.now = at("2019-05-15T04:00:00")
        empty = await Account.open(client, pool, admin_key)
        await client.post("/dashboard/logout")  # the form needs its token: signs in afresh
        client.cookies.clear()
        await sign_in(client, empty.key)
        card = balance_card(await client.get("/dashboard"))
        assert "<strong>US$0.00</strong>" in card
        assert (
            "No withdrawal now: a withdrawal needs more than US$16.00 withdrawable "
            "(US$0.00 now)." in card
        )
