"""The dashboard's sign-in, session cookie, CSRF and escaping, over HTTP in-process.
(tests/integration/test_dashboard_browser.py drives it in Chromium.)"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager

from app.accounts.apikeys import Role, create_key
from app.audit.log import list_entries
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.dashboard import labels
from app.dashboard.sessions import COOKIE, LOGIN_CSRF_COOKIE
from app.links import builder
from app.links import store as link_store
from app.links.model import LinkStatus
from app.main import create_app
from app.money.periods import Month, Period
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


REVERSED = (
    "from: the first day (10 January 2026) is after the last day, &quot;to&quot; (1 January 2026)"
)


OUT_OF_RANGE = "from: 9999-12-31 is out of range: days run from 1970-01-01 to 2999-12-31"
TOO_LONG = (
    "from: 1 January 2025 to 1 December 2026 is 700 days: a range is at most 366 days long, "
    "within 1970-01-01 to 2999-12-31"
)


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        (
            "/dashboard/export/traffic.csv",
            {"group_by": "<b>week</b>"},
            400,
            "group_by: &#x27;&lt;b&gt;week",
        ),
        (
            "/dashboard/export/traffic.csv",
            {"from": "2026-01-10", "to": "2026-01-01"},
            400,
            REVERSED,
        ),
        ("/dashboard/export/orders.csv", {"from": "2026-01-10", "to": "2026-01-01"}, 400, REVERSED),
        ("/dashboard", {"from": "2026-01-10", "to": "2026-01-01"}, 400, REVERSED),
        ("/dashboard", {"from": "2999-01-01"}, 400, "the last day, &quot;to&quot; (today, "),
        (
            "/dashboard/export/traffic.csv",
            {"group_by": "dp", "from": "2026-01-01", "to": "2026-03-01"},
            400,
            "from: the range covers 60 days; at most 31",
        ),
        ("/dashboard/export/orders.csv", {"from": "garbage"}, 400, "from: expected a day"),
        ("/dashboard/export/income.csv", {"bom": "maybe"}, 400, "bom: expected true or false"),
        ("/dashboard", {"to": "2026-02-30"}, 400, "to: expected a day"),
        ("/dashboard/withdrawals", {"requested": "1;2"}, 400, "requested: expected a withdrawal"),
        # A day out of range, on every page and download: the bounds, never a moved window.
        ("/dashboard", {"from": "9999-12-31", "to": "9999-12-31"}, 400, OUT_OF_RANGE),
        ("/dashboard", {"from": "3000-01-01"}, 400, "from: 3000-01-01 is out of range"),
        ("/dashboard", {"from": "0000-01-01"}, 400, "from: 0000-01-01 is out of range"),
        ("/dashboard", {"from": "1900-01-01", "to": "2026-12-01"}, 400, "from: 1900-01-01 is"),
        ("/dashboard", {"from": "2026-01-01", "to": "9999-12-31"}, 400, "to: 9999-12-31 is out"),
        ("/dashboard/export/orders.csv", {"from": "0000-01-01"}, 400, "from: 0000-01-01 is out"),
        ("/dashboard/export/traffic.csv", {"to": "9999-12-31"}, 400, "to: 9999-12-31 is out"),
        # A range longer than a report covers: said, with the longest allowed and the bounds.
        ("/dashboard", {"from": "2025-01-01", "to": "2026-12-01"}, 400, TOO_LONG),
        # The income download reads its months as the API's /reports/income does.
        ("/dashboard/export/income.csv", {"from": "2026-13"}, 400, "no such month: 2026-13"),
        ("/dashboard/export/income.csv", {"to": "0000-01"}, 400, "expected a year from 1970"),
        ("/dashboard/export/income.csv", {"from": "2026"}, 400, "expected YYYY-MM"),
        # Known query parameters of the Links pages.
        ("/dashboard/links", {"status": "bogus"}, 400, "status: expected active, disabled or"),
        ("/dashboard/links", {"show": "bogus"}, 400, "show: expected current, archived or all"),
        ("/dashboard/links", {"done": "bogus"}, 400, "done: expected one of destination"),
        ("/dashboard/links/build", {"code": "Nope1", "af": "x" * 129}, 404, "no link with"),
    ],
)
async def test_bad_input_answers_an_html_page_not_the_apis_json(
    app_client: httpx.AsyncClient,
    publisher: tuple[int, str],
    path: str,
    params: dict[str, str],
    status: int,
    message: str,
) -> None:
    """A reversed range (``from`` after ``to``) is said, with a 400, never turned round."""
    assert (await app_client.get(path, params=params)).status_code == 303  # no session yet
    await sign_in(app_client, publisher[1])
    answer = await app_client.get(path, params=params)
    assert answer.status_code == status
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


# -- empty states, and labels that tell calendar months from calculation periods ------------


def section(page: httpx.Response, pattern: str) -> str:
    found = re.search(pattern, page.text, re.S)
    assert found is not None, pattern
    return found.group(0)


async def test_sections_without_data_say_so_in_words(
    app_client: httpx.AsyncClient, publisher: tuple[int, str]
) -> None:
    """A new publisher: no bare axes, no empty table; each section says what is missing."""
    await sign_in(app_client, publisher[1])
    page = await app_client.get("/dashboard")
    assert page.status_code == 200
    for chart, words in [
        ("clicks-chart", "No clicks yet in this range."),
        ("orders-chart", "No orders yet in this range."),
        ("conversion-chart", "No billable clicks in this range, so no conversion rate yet."),
        ("top-ids-chart", "No clicks yet in this range."),
    ]:
        figure = section(page, f'<figure id="{chart}">.*?</figure>')
        assert words in figure and "<svg" not in figure
    assert '<table id="top-ids"' not in page.text
    assert '<p class="empty" id="top-ids-empty">No clicks yet in this range.</p>' in page.text
    assert '<table id="income"' not in page.text
    assert "No income yet in the last 6 calculation periods (10th to 9th)." in page.text
    withdrawals = await app_client.get("/dashboard/withdrawals")
    assert withdrawals.status_code == 200
    assert '<p class="empty" id="withdrawals-empty">No withdrawals yet.</p>' in withdrawals.text


def card_note(page: httpx.Response, key: str) -> str:
    found = re.search(
        rf'<div class="card" data-figure="{key}"><span>([^<]*)</span>'
        r"<strong>([^<]*)</strong><small>([^<]*)</small>",
        page.text,
    )
    assert found is not None, key
    return " | ".join(found.groups())


async def test_labels_tell_calendar_months_from_calculation_periods(
    settings: Settings, pool: Pool, admin_key: str
) -> None:
    """On 15 May 2019 (UTC): the cards name calendar months (May, April), the income table
    calculation periods (the 2019-03 period runs 10 March to 9 April), the downloads say
    which; a period across a new year names both years."""
    clock = Clock(at("2019-05-15T04:00:00"))
    async with clocked_client(settings, clock) as client:
        account = await Account.open(client, pool, admin_key)
        await account.completed(at("2019-03-15T10:00:00"), "1000.00")
        await account.close("2019-03")
        await sign_in(client, account.key)
        page = await client.get("/dashboard")
        assert page.status_code == 200
        assert card_note(page, "estimated") == (
            "Estimated commission, this calendar month | US$0.00 | Calendar month May 2019"
        )
        assert card_note(page, "income") == (
            "Income, last calendar month | US$80.00 | Calendar month April 2019"
        )
        row = section(page, r'<tr data-period="2019-03">.*?</tr>')
        assert (
            '<td data-label="Calculation period (10th to 9th)"><span class="kind">Calculation '
            'period </span>10 Mar \u2013 9 Apr 2019</td><td data-label="State">closed</td>' in row
        )
        assert "<th>Calculation period (10th to 9th)</th>" in page.text
        assert "Income by calculation period (10th to 9th), the last 12</a>" in page.text
        assert "Live Order Tracking, days 16 Apr \u2013 15 May 2019</a>" in page.text
        assert re.search(r">Income[^<]*2019-0\d", page.text) is None  # no bare YYYY-MM label
    assert labels.calculation_period(Period.of(2018, 12)) == (
        "Calculation period 10 Dec 2018 \u2013 9 Jan 2019"
    )
    assert labels.calendar_month(Month(2026, 10)) == "Calendar month October 2026"


# -- a withdrawal requested from the dashboard ----------------------------------------------


async def withdrawals_token(client: httpx.AsyncClient) -> str:
    page = await client.get("/dashboard/withdrawals")
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)


async def test_a_withdrawal_requested_from_the_dashboard(
    settings: Settings, pool: Pool, admin_key: str
) -> None:
    """80.00 withdrawable on 15 May 2019: 50.00 is taken (35.00 paid, 15.00 fee), with its
    audit entry; then 100.00 is refused in words (409), a bad amount too (422), a form
    without the session's token (403) and a request after the 20th (409) change nothing."""
    clock = Clock(at("2019-05-15T04:00:00"))
    async with clocked_client(settings, clock) as client:
        account = await Account.open(client, pool, admin_key)
        await account.completed(at("2019-03-15T10:00:00"), "1000.00")
        await account.close("2019-03")  # 80.00, booked 10 April
        await sign_in(client, account.key)
        token = await withdrawals_token(client)
        form = await client.get("/dashboard/withdrawals")
        assert 'id="withdrawable" data-amount="80.00">US$80.00</strong>' in form.text

        made = await client.post("/dashboard/withdrawals", data={"csrf": token, "amount": "50"})
        assert made.status_code == 303, made.text
        assert made.headers["location"].startswith("/dashboard/withdrawals?requested=")
        shown = await client.get(made.headers["location"])
        [w] = (await account.get("/api/v1/money/withdrawals"))["items"]
        assert (w["amount"], w["fee"], w["payout"], w["status"]) == (
            "50.00", "15.00", "35.00", "requested"
        )  # fmt: skip
        assert (
            f"Withdrawal {w['id']} requested: US$50.00 taken from the balance, of which "
            "US$35.00 will be paid to you and US$15.00 is the fee. Payment is due around "
            "14 June 2019." in shown.text
        )
        row = section(shown, rf'<tr data-withdrawal="{w["id"]}".*?</tr>')
        assert 'data-status="requested"' in row and "requested: waiting for approval" in row
        async with pool.acquire() as conn:
            key_id = await conn.fetchval(
                "SELECT id FROM api_keys WHERE publisher_id = $1", account.publisher_id
            )
            [entry] = await list_entries(
                conn, publisher_id=account.publisher_id, action="withdrawal.request"
            )
        assert (entry.actor, entry.actor_role, entry.action) == (
            f"dashboard:key:{key_id}", "publisher", "withdrawal.request"
        )  # fmt: skip
        assert (entry.target_kind, entry.target_id, entry.before) == (
            "withdrawal",
            str(w["id"]),
            None,
        )
        assert entry.after == {
            "amount": "50.00",
            "fee": "15.00",
            "payout": "35.00",
            "status": "requested",
        }

        refused = await client.post("/dashboard/withdrawals", data={"csrf": token, "amount": "100"})
        assert refused.status_code == 409
        assert "No withdrawal was requested: amount 100.00 is more than" in refused.text
        assert 'role="alert"' in refused.text
        bad = await client.post("/dashboard/withdrawals", data={"csrf": token, "amount": "1e3x"})
        assert bad.status_code == 422
        assert "No withdrawal was requested: amount: &#x27;1e3x&#x27; is not an amount" in bad.text
        forged = await client.post("/dashboard/withdrawals", data={"csrf": "guess", "amount": "20"})
        assert forged.status_code == 403 and "Nothing was changed" in forged.text
        missing = await client.post("/dashboard/withdrawals", data={"amount": "20"})
        assert missing.status_code == 403
        crowded = {"csrf": token, "amount": "20", **{f"f{n}": "x" for n in range(12)}}
        assert (await client.post("/dashboard/withdrawals", data=crowded)).status_code == 403
        as_json = await client.post("/dashboard/withdrawals", json={"csrf": token})
        assert as_json.status_code == 403
        clock.now = at("2019-05-21T04:00:00")
        late = await client.post("/dashboard/withdrawals", data={"csrf": token})
        assert late.status_code == 409
        assert "withdrawals can be requested on days 1 to 20 of a month" in late.text
        assert len((await account.get("/api/v1/money/withdrawals"))["items"]) == 1
        async with pool.acquire() as conn:
            requests = await list_entries(
                conn, publisher_id=account.publisher_id, action="withdrawal.request"
            )
            assert len(requests) == 1


# -- links: the list, a change of destination, disable/archive/restore, the builder ---------


async def new_links(pool: Pool, publisher_id: int, *codes: str) -> None:
    async with pool.acquire() as conn:
        for code in codes:
            await link_store.create_link(
                conn, publisher_id, f"https://shop.example.com/{code.lower()}", code=code
            )


async def session_token(client: httpx.AsyncClient) -> str:
    page = await client.get("/dashboard/links")
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)


async def link_row(client: httpx.AsyncClient, code: str, show: str = "current") -> str | None:
    page = await client.get("/dashboard/links", params={"show": show})
    assert page.status_code == 200
    found = re.search(rf'<tr data-code="{code}".*?</tr>', page.text, re.S)
    return None if found is None else found.group(0)


async def test_links_are_listed_changed_archived_and_restored(
    app_client: httpx.AsyncClient,
    publisher: tuple[int, str],
    pool: Pool,
    redis: aioredis.Redis,
    settings: Settings,
) -> None:
    """Each change is a CSRF-checked POST, written with its audit entry and pushed to the
    redirect's mirror; a bad destination is refused in words (422); another publisher's link
    answers 404; a form's "back" never leaves the Links pages."""
    publisher_id, key = publisher
    await new_links(pool, publisher_id, "DashA1", "DashB2")
    async with pool.acquire() as conn:
        other = await conn.fetchval("INSERT INTO publishers (name) VALUES ('Other') RETURNING id")
    await new_links(pool, other, "OtherC3")
    await sign_in(app_client, key)
    token = await session_token(app_client)
    row = await link_row(app_client, "DashA1")
    assert row is not None and 'data-status="active"' in row
    assert f'<td data-label="Short URL">{settings.public_base_url}/e/DashA1</td>' in row
    assert '<td data-label="Destination" class="wrap">https://shop.example.com/dasha1</td>' in row
    assert await link_row(app_client, "OtherC3") is None

    path = "/dashboard/links/DashA1"
    change = {"action": "destination", "destination": "https://shop.example.com/new?x=1"}
    assert (await app_client.post(path, data=change)).status_code == 403  # no token
    assert (await app_client.post(path, data={**change, "csrf": "guess"})).status_code == 403
    bad = await app_client.post(
        path, data={**change, "csrf": token, "destination": "https://elsewhere.test/x"}
    )
    assert bad.status_code == 422 and "Nothing was changed: destination:" in bad.text
    assert 'value="https://elsewhere.test/x"' in bad.text  # what was typed, shown again
    done = await app_client.post(path, data={**change, "csrf": token})
    assert done.status_code == 303 and done.headers["location"] == f"{path}?done=destination"
    shown = await app_client.get(done.headers["location"])
    assert "Destination changed: the next click goes to https://shop.example.com/new?x=1" in (
        shown.text.replace("&amp;", "&")
    )
    mirrored = await redis.get(RedisKeys(settings.key_prefix).link("DashA1"))
    assert mirrored is not None and b"https://shop.example.com/new?x=1" in mirrored

    archive = {"csrf": token, "action": "archive", "back": "/dashboard/links?show=current"}
    archived = await app_client.post(path, data=archive)
    assert archived.headers["location"] == "/dashboard/links?show=current&done=archive"
    assert await link_row(app_client, "DashA1") is None
    row = await link_row(app_client, "DashA1", "archived")
    assert row is not None and 'data-status="archived"' in row and 'data-action="restore"' in row
    escape_attempt = {"csrf": token, "action": "restore", "back": "https://evil.example.com/"}
    restored = await app_client.post(path, data=escape_attempt)
    assert restored.headers["location"] == f"{path}?done=restore"
    again = await app_client.post(path, data={"csrf": token, "action": "restore"})
    assert again.headers["location"] == f"{path}?done=unchanged"
    disabled = await app_client.post(path, data={"csrf": token, "action": "disable"})
    assert disabled.status_code == 303
    row = await link_row(app_client, "DashA1")
    assert row is not None and 'data-status="disabled"' in row

    async with pool.acquire() as conn:
        entries = await list_entries(conn, target_kind="link", target_id="DashA1")
    updates = [(e.before, e.after) for e in reversed(entries) if e.action == "link.update"]
    old, new = "https://shop.example.com/dasha1", "https://shop.example.com/new?x=1"
    assert updates == [
        ({"destination": old, "status": "active"}, {"destination": new, "status": "active"}),
        ({"destination": new, "status": "active"}, {"destination": new, "status": "archived"}),
        ({"destination": new, "status": "archived"}, {"destination": new, "status": "active"}),
        ({"destination": new, "status": "active"}, {"destination": new, "status": "disabled"}),
    ]
    key_id = await pool.fetchval("SELECT id FROM api_keys WHERE publisher_id = $1", publisher_id)
    assert {e.actor for e in entries if e.action == "link.update"} == {f"dashboard:key:{key_id}"}

    for answer in (
        await app_client.get("/dashboard/links/OtherC3"),
        await app_client.post(
            "/dashboard/links/OtherC3", data={"csrf": token, "action": "disable"}
        ),
        await app_client.get("/dashboard/links/build", params={"code": "OtherC3"}),
    ):
        assert answer.status_code == 404 and "you have no link with the code" in answer.text
    async with pool.acquire() as conn:
        untouched = await link_store.get_link(conn, "OtherC3")
    assert untouched is not None and untouched.status == "active"
    assert (await app_client.get("/dashboard/links", params={"show": "x"})).status_code == 400


async def test_the_builder_gives_the_tracking_url_and_its_qr_code(
    app_client: httpx.AsyncClient, publisher: tuple[int, str], pool: Pool, settings: Settings
) -> None:
    publisher_id, key = publisher
    await sign_in(app_client, key)
    none_yet = await app_client.get("/dashboard/links/build")
    assert "No active link to build on" in none_yet.text
    links = await app_client.get("/dashboard/links")
    assert "No links yet" in links.text and '<table id="links"' not in links.text
    await new_links(pool, publisher_id, "BuildA1")

    page = await app_client.get("/dashboard/links/build")
    assert page.status_code == 200 and '<option value="BuildA1"' in page.text
    assert 'id="tracking-url"' not in page.text
    built = await app_client.get(
        "/dashboard/links/build", params={"code": "BuildA1", "af": "001", "cn": "spring sale"}
    )
    assert built.status_code == 200, built.text
    url = f"{settings.public_base_url}/e/BuildA1?af=001&cn=spring%20sale"
    assert (
        builder.tracking_url(f"{settings.public_base_url}/e/BuildA1", af="001", cn="spring sale")
        == url
    )
    field = re.search(r'<textarea id="tracking-url" readonly[^>]*>([^<]*)</textarea>', built.text)
    assert field is not None and html.unescape(field.group(1)) == url
    assert '<button type="button" class="copy" data-copy="tracking-url" hidden>' in built.text
    assert '<script src="/dashboard/static/copy.js" defer></script>' in built.text
    qr = re.search(r'<div class="qr" id="qr">(<svg [^>]*>)', built.text)
    assert qr is not None and "viewBox=" in qr.group(1) and 'role="img"' in qr.group(1)
    assert "<?xml" not in built.text
    script = await app_client.get("/dashboard/static/copy.js")
    assert script.status_code == 200 and "navigator.clipboard" in script.text
    assert (await app_client.get("/dashboard/static/secret.py")).status_code == 404

    bad = await app_client.get(
        "/dashboard/links/build", params={"code": "BuildA1", "af": "ok", "dp": "a\u200bb"}
    )
    assert bad.status_code == 400 and "No link was made: dp:" in bad.text
    assert re.search(r'<input id="dp"[^>]*aria-invalid="true"', bad.text) is not None
    assert 'id="tracking-url"' not in bad.text


async def test_odd_input_answers_a_page_never_a_500(
    app_client: httpx.AsyncClient, publisher: tuple[int, str], pool: Pool
) -> None:
    """Whatever a browser or a person sends, an HTML page with a 2xx, 3xx or 4xx status."""
    await new_links(pool, publisher[0], "OddA1")
    await sign_in(app_client, publisher[1])
    token = await session_token(app_client)
    gets = [
        ("/dashboard", {"from": "", "to": ""}),
        ("/dashboard", {"from": "2026-13-01"}),
        ("/dashboard/links", {"after": "9" * 40}),
        ("/dashboard/links", {"after": "-1"}),
        ("/dashboard/links/%F0%9F%98%80", {}),
        ("/dashboard/links/" + "a" * 300, {}),
        ("/dashboard/links/build", {"code": "OddA1", "af": "x" * 129}),
        ("/dashboard/links/build", {"code": "OddA1", "cv": "\x00"}),
        ("/dashboard/links/build", {"code": "OddA1", "dp": "d" * 128, "af": "a" * 128}),
        ("/dashboard/links/build", {"code": "<b>"}),
        ("/dashboard/withdrawals", {"requested": "99999999999999999999999"}),
        ("/dashboard/static/..%2Fsessions.py", {}),
    ]
    for path, params in gets:
        answer = await app_client.get(path, params=params)
        assert answer.status_code < 500, (path, params, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html"), (path, params)
    posts = [
        ("/dashboard/withdrawals", {"amount": "NaN"}),
        ("/dashboard/withdrawals", {"amount": "sNaN"}),
        ("/dashboard/withdrawals", {"amount": "1e999999"}),
        ("/dashboard/withdrawals", {"amount": "0.001"}),
        ("/dashboard/withdrawals", {"amount": "-5"}),
        ("/dashboard/links/OddA1", {"action": "explode"}),
        ("/dashboard/links/OddA1", {"action": "destination"}),
        ("/dashboard/links/OddA1", {"action": "destination", "destination": "x" * 5000}),
        ("/dashboard/links/OddA1", {"action": "destination", "destination": "javascript:1"}),
        ("/dashboard/links/OddA1", {"action": "restore", "back": "//evil.example.com"}),
        ("/dashboard/links/%00", {"action": "disable"}),
    ]
    for path, form in posts:
        answer = await app_client.post(path, data={"csrf": token, **form})
        assert answer.status_code < 500, (path, form, answer.status_code)
        if answer.status_code == 303:
            assert answer.headers["location"].startswith("/dashboard/"), (path, form)
        else:
            assert answer.headers["content-type"].startswith("text/html"), (path, form)


async def test_an_error_from_any_layer_answers_the_html_page(
    app_client: httpx.AsyncClient, publisher: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``ClickTrackError`` raised below a dashboard route (here the reports' own range
    check) answers the dashboard's HTML page with its status, never the API's JSON."""
    from app.dashboard import routes
    from app.traffic.counts import RangeError

    async def refuse(*_: object) -> None:
        raise RangeError("days run from 1970-01-01 to 2999-12-31", field="from")

    monkeypatch.setattr(routes, "dashboard_view", refuse)
    await sign_in(app_client, publisher[1])
    answer = await app_client.get("/dashboard")
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("text/html")
    assert "from: days run from 1970-01-01 to 2999-12-31" in answer.text


async def test_echoed_text_is_bounded(
    app_client: httpx.AsyncClient, publisher: tuple[int, str], pool: Pool
) -> None:
    """A caller's own text is repeated up to 64 characters, then "…", on every page."""
    await new_links(pool, publisher[0], "EchoA1")
    await sign_in(app_client, publisher[1])
    for path, params in (
        ("/dashboard/links/build", {"code": "x" * 5000}),
        ("/dashboard/links/" + "x" * 5000, {}),
    ):
        answer = await app_client.get(path, params=params)
        assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
        assert f"you have no link with the code &#x27;{'x' * 64}\u2026" in answer.text
        assert "x" * 65 not in answer.text
    token = await session_token(app_client)
    typed = "https://evil.example.org/" + "y" * 3000
    answer = await app_client.post(
        "/dashboard/links/EchoA1",
        data={"csrf": token, "action": "destination", "destination": typed},
    )
    assert answer.status_code == 422
    notice = re.search(r'<p class="notice error"[^>]*>(.*?)</p>', answer.text, re.S)
    assert notice is not None
    assert "y" * 65 not in notice.group(1), notice.group(1)[:300]


async def test_a_withdrawal_too_large_says_so_with_the_bound(
    app_client: httpx.AsyncClient, publisher: tuple[int, str]
) -> None:
    await sign_in(app_client, publisher[1])
    token = await session_token(app_client)
    for amount in ("99999999999999999999999", "1,000,000,000,000"):
        answer = await app_client.post(
            "/dashboard/withdrawals", data={"csrf": token, "amount": amount}
        )
        assert answer.status_code == 422
        assert "amount: is too large: a withdrawal is at most US$999,999,999,999.99" in answer.text
    answer = await app_client.post(
        "/dashboard/withdrawals", data={"csrf": token, "amount": "1e999999"}
    )
    assert answer.status_code == 422 and "is not an amount" in answer.text  # no exponents
    answer = await app_client.post("/dashboard/withdrawals", data={"csrf": token, "amount": "-5"})
    assert answer.status_code == 422 and "amount: must be a positive amount" in answer.text


async def test_counts_agree_with_their_nouns_and_long_ranges_are_refused(
    app_client: httpx.AsyncClient, publisher: tuple[int, str]
) -> None:
    """One day is "1 day."; the longest range (366 days) is shown as asked, a day longer
    refused, never cut to another window."""
    await sign_in(app_client, publisher[1])
    one = await app_client.get("/dashboard", params={"from": "2026-01-01", "to": "2026-01-01"})
    assert one.status_code == 200 and "1 day.</span>" in one.text and "1 days" not in one.text
    longest = await app_client.get("/dashboard", params={"from": "2025-01-01", "to": "2026-01-01"})
    assert longest.status_code == 200 and "366 days.</span>" in longest.text
    assert 'name="from" value="2025-01-01"' in longest.text
    longer = await app_client.get("/dashboard", params={"from": "2024-12-31", "to": "2026-01-01"})
    assert longer.status_code == 400 and "is 367 days: a range is at most 366 days" in longer.text


async def test_the_links_list_narrows_by_status_as_the_api_does(
    app_client: httpx.AsyncClient, publisher: tuple[int, str], pool: Pool
) -> None:
    await new_links(pool, publisher[0], "StatA1", "StatB2")
    async with pool.acquire() as conn:
        found = await link_store.get_link(conn, "StatB2")
        assert found is not None
        await link_store.update_link(conn, found.id, status=LinkStatus.disabled)
    await sign_in(app_client, publisher[1])
    page = await app_client.get("/dashboard/links", params={"status": "disabled"})
    assert page.status_code == 200
    assert 'data-code="StatB2"' in page.text and 'data-code="StatA1"' not in page.text
    assert 'id="only">Only disabled (404) links.' in page.text
    every = await app_client.get("/dashboard/links", params={"utm_source": "mail"})
    assert every.status_code == 200  # an unknown parameter is ignored
    assert 'data-code="StatA1"' in every.text and 'data-code="StatB2"' in every.text
    # Each cell is labelled by its column: on a phone each row is a card of labelled cells.
    assert '<td data-label="Actions" class="actions">' in every.text


async def test_the_pages_have_an_icon(app_client: httpx.AsyncClient) -> None:
    login = await app_client.get("/dashboard/login")
    assert '<link rel="icon" href="/dashboard/static/favicon.svg" type="image/svg+xml">' in (
        login.text
    )
    icon = await app_client.get("/dashboard/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.text.startswith("<svg") and "<script" not in icon.text


async def test_an_unknown_dashboard_address_answers_a_page(app_client: httpx.AsyncClient) -> None:
    answer = await app_client.get("/dashboard/nope/" + "z" * 300)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "there is no such dashboard page" in answer.text
    # a download that takes no POST: the page says so, with Allow
    answer = await app_client.post("/dashboard/export/orders.csv")
    assert answer.status_code == 405 and answer.headers["allow"] == "GET"
    assert answer.headers["content-type"].startswith("text/html")
    assert "does not take POST requests" in answer.text
