"""Reports judged by the glossary, in the period time zone (Asia/Shanghai, UTC+8), on real
Postgres: clicks through the stream and the flusher, orders through signed postbacks.

- *Completed orders* are those completed within 60 days of their purchase: an order the
  merchant reports completed 89 days after it was placed is counted by no report (the
  overview, its conversion rate, the Live Order Tracking's statuses, the income's completed
  sales, the dashboard), and one completed after exactly 60 days still is.
- One time zone for every date a publisher sees: orders and clicks either side of midnight
  in Shanghai (16:00 UTC) fall on the same day and in the same period in the CSV exports,
  the income report, the overview, the traffic report and the dashboard, and every answer
  names the zone.

Every expected figure is worked out here from the script, not by the code under test.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager

from app.accounts.apikeys import Role, create_key
from app.clicks.record import Flag
from app.core.db import Pool
from app.main import create_app
from app.settings import Settings
from app.traffic import recount, rollups
from tests.conftest import TEST_REDIS_URL
from tests.support.orders import ensure_default_plan, new_merchant, order_body, signed
from tests.support.reports import click, flush, own_database, own_pool

SHANGHAI = ZoneInfo("Asia/Shanghai")
D = Decimal
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class Placed:
    ref: str
    placed: datetime
    amount: Decimal
    status: str = "incomplete"
    completed: datetime | None = None
    af: str = "zone"


# Either side of midnight in Shanghai: 16:00 UTC.
BEFORE = Placed("Z-before", utc("2016-10-09T15:30"), D("5.00"))  # 9 Oct 23:30: period 2016-09
AFTER = Placed(  # 10 Oct 00:30: period 2016-10; completed 13 Oct 00:10 (12 Oct in UTC)
    "Z-after", utc("2016-10-09T16:30"), D("10.00"), "completed", utc("2016-10-12T16:10")
)
LAST = Placed("Z-last", utc("2016-11-09T15:59:59"), D("5.00"))  # 9 Nov 23:59:59: 2016-10
NEXT = Placed("Z-next", utc("2016-11-09T16:00"), D("5.00"))  # 10 Nov 00:00: period 2016-11

# On 20 Oct 2016 (Shanghai): four orders, ten billable clicks and a flagged one.
SALE_DAY = date(2016, 10, 20)
A = Placed("G-2days", utc("2016-10-20T02:00"), D("100.00"), "completed", af="glossary")
B = Placed("G-60days", utc("2016-10-20T03:00"), D("200.00"), "completed", af="glossary")
C = Placed("G-89days", utc("2016-10-20T04:00"), D("400.00"), "completed", af="glossary")
E = Placed("G-open", utc("2016-10-20T05:00"), D("50.00"), af="glossary")
A.completed = A.placed + timedelta(days=2)
B.completed = B.placed + timedelta(days=60)  # the last moment that still counts
C.completed = C.placed + timedelta(days=89)  # too late: never a completed order

ORDERS = [BEFORE, AFTER, LAST, NEXT, A, B, C, E]
IN_TIME = {AFTER.ref, A.ref, B.ref}  # the glossary's completed orders
EXTRA_CLICKS = 6  # billable clicks on SALE_DAY besides the four orders' own


@dataclass
class World:
    client: httpx.AsyncClient
    pool: Pool
    settings: Settings
    key: str
    admin_key: str
    publisher_id: int
    codes: list[str] = field(default_factory=list)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _script(world: World, redis: aioredis.Redis, link_id: int) -> None:
    settings, pool = world.settings, world.pool
    async with pool.acquire() as conn:
        await ensure_default_plan(conn)
        merchant = await new_merchant(conn)
    code = world.codes[0]
    for n, order in enumerate(ORDERS):
        made = click(
            order.placed, link_id, world.publisher_id, f"buyer-{n}", af=order.af, code=code
        )
        assert await flush(settings, redis, pool, [made]) == 1
        status_time = order.completed if order.status == "completed" else order.placed
        body = order_body(
            order.ref, made.click_id, order.placed, order.amount,
            status=order.status, status_time=status_time,
        )  # fmt: skip
        answer = await world.client.post(
            "/api/v1/postback", content=body, headers=signed(*merchant, body)
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["attribution"] == "attributed", answer.text
    others = [
        click(utc("2016-10-20T06:00") + timedelta(minutes=n), link_id, world.publisher_id,
              f"visitor-{n}", af="glossary", dp=f"d{n}", code=code)
        for n in range(EXTRA_CLICKS)
    ]  # fmt: skip
    flagged = click(
        utc("2016-10-20T07:00"), link_id, world.publisher_id, "robot", af="glossary",
        flags=int(Flag.bot), code=code,
    )  # fmt: skip
    assert await flush(settings, redis, pool, [*others, flagged]) == EXTRA_CLICKS + 1


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    prefix = f"cttest:{uuid.uuid4().hex[:12]}"
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    async with own_database() as url, own_pool(url) as pool:
        settings = Settings(
            redis_url=TEST_REDIS_URL,
            database_url=url,
            key_prefix=prefix,
            cookie_secure=False,
            cookie_secret="test-cookie-secret-test-cookie-secret",
            allowed_hosts=("shop.example.com",),
            flush_block_ms=20,
            flag_bots=False,
            duplicate_window_s=0,
            ip_clicks_per_minute=0,
            period_timezone="Asia/Shanghai",
        )
        app = create_app(settings)
        try:
            async with (
                LifespanManager(app) as manager,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver"
                ) as client,
            ):
                async with pool.acquire() as conn:
                    _, admin_key = await create_key(conn, Role.admin, None)
                    publisher_id = await conn.fetchval(
                        "INSERT INTO publishers (name) VALUES ('Shanghai Blog') RETURNING id"
                    )
                    _, key = await create_key(conn, Role.publisher, publisher_id)
                made = await client.post(
                    "/api/v1/links",
                    headers=bearer(key),
                    json={"destination": "https://shop.example.com/x", "code": "zoneA"},
                )
                assert made.status_code == 201, made.text
                link_id = await pool.fetchval("SELECT id FROM links WHERE code = 'zoneA'")
                found = World(client, pool, settings, key, admin_key, publisher_id, ["zoneA"])
                await _script(found, redis, link_id)
                yield found
        finally:
            keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()


async def get_json(world: World, path: str, **params: str) -> Any:
    answer = await world.client.get(f"/api/v1{path}", params=params, headers=bearer(world.key))
    assert answer.status_code == 200, answer.text
    return answer.json()


async def get_csv(
    world: World, path: str, **params: str | list[str]
) -> tuple[httpx.Response, list[dict[str, str]]]:
    answer = await world.client.get(f"/api/v1{path}", params=params, headers=bearer(world.key))
    assert answer.status_code == 200, answer.text
    return answer, list(csv.DictReader(io.StringIO(answer.content.decode("utf-8"))))


def refs(rows: list[dict[str, str]]) -> list[str]:
    return [row["order_id"] for row in rows]


def in_days(first: str, last: str) -> list[str]:
    """The scripted orders placed on those days in Shanghai, in order time."""
    lo, hi = date.fromisoformat(first), date.fromisoformat(last)
    chosen = [o for o in ORDERS if lo <= o.placed.astimezone(SHANGHAI).date() <= hi]
    return [o.ref for o in sorted(chosen, key=lambda o: o.placed)]


# -- item: completed orders are those completed within 60 days ---------------------------------


async def test_the_overview_counts_only_orders_completed_within_60_days(world: World) -> None:
    day = str(SALE_DAY)
    found = await get_json(world, "/reports/overview", **{"from": day, "to": day})
    assert found["time_zone"] == "Asia/Shanghai"
    assert (found["clicks"], found["billable_clicks"], found["flagged_clicks"]) == (11, 10, 1)
    assert found["orders"] == 4
    assert found["completed_orders"] == 2  # 2 days and exactly 60 days; not 89 days
    assert found["conversion_rate"] == "0.200000"
    assert D(str(found["total_amount"])) == A.amount + B.amount + C.amount + E.amount


async def test_live_order_tracking_shows_a_late_completion_as_completed_late(
    world: World,
) -> None:
    span = {"from": "2016-10-01", "to": "2016-11-30"}
    _, rows = await get_csv(world, "/reports/orders.csv", **span)
    shown = {row["order_id"]: (row["status"], row["commission_status"]) for row in rows}
    assert shown[C.ref] == ("completed_late", "none")
    assert shown[B.ref][0] == shown[A.ref][0] == shown[AFTER.ref][0] == "completed"
    _, completed = await get_csv(world, "/reports/orders.csv", **span, status="completed")
    assert set(refs(completed)) == IN_TIME
    _, late = await get_csv(world, "/reports/orders.csv", **span, status="completed_late")
    assert refs(late) == [C.ref]
    _, both = await get_csv(
        world, "/reports/orders.csv", **span, status=["completed", "completed_late"]
    )
    assert set(refs(both)) == IN_TIME | {C.ref}


async def test_open_periods_completed_sales_leave_a_late_completion_out(world: World) -> None:
    found = await get_json(world, "/reports/income", **{"from": "2016-10", "to": "2017-01"})
    sales = {p["period"]: D(p["completed_sales"]) for p in found["periods"]}
    # 2016-10: AFTER and A, completed in it (and nothing before it).
    assert sales["2016-10"] == AFTER.amount + A.amount
    # C was completed on 17 Jan 2017, in 2017-01, 89 days after its purchase: 2017-01's sales
    # leave it out, whether they hold what was completed in the period alone (none of the
    # others) or everything completed by its end (AFTER, A and B: less than C alone).
    assert AFTER.amount + A.amount + B.amount < C.amount
    assert sales["2017-01"] < C.amount


# -- item: one time zone, the period's, for every date a publisher sees ------------------------


async def test_a_periods_days_list_the_orders_the_income_report_counts(world: World) -> None:
    found = await get_json(world, "/reports/income", **{"from": "2016-09", "to": "2016-11"})
    assert found["time_zone"] == "Asia/Shanghai"
    periods = {p["period"]: p for p in found["periods"]}
    for name, first, last in (
        ("2016-09", "2016-09-10", "2016-10-09"),
        ("2016-10", "2016-10-10", "2016-11-09"),
        ("2016-11", "2016-11-10", "2016-12-09"),
    ):
        period = periods[name]
        assert (period["first_day"], period["last_day"]) == (first, last)
        answer, rows = await get_csv(world, "/reports/orders.csv", **{"from": first, "to": last})
        assert answer.headers["x-time-zone"] == "Asia/Shanghai"
        assert refs(rows) == in_days(first, last)
        assert period["orders"] == len(rows), name
        placed = sum((D(row["amount"]) for row in rows), D("0.00"))
        assert D(period["order_amount"]) == placed, name
    assert len(in_days("2016-10-10", "2016-11-09")) == 6  # AFTER, A, B, C, E and LAST
    _, csv_rows = await get_csv(
        world, "/reports/income.csv", **{"from": "2016-09", "to": "2016-11"}
    )
    assert [r["first_day_asia_shanghai"] for r in csv_rows] == [
        "2016-09-10", "2016-10-10", "2016-11-10",
    ]  # fmt: skip


async def test_orders_either_side_of_midnight_fall_on_their_shanghai_day(world: World) -> None:
    answer, rows = await get_csv(
        world, "/reports/orders.csv", **{"from": "2016-10-10", "to": "2016-10-10"}
    )
    header = answer.content.decode("utf-8").split("\r\n")[0]
    assert header.startswith(
        '"order_id","order_time_asia_shanghai","transaction_time_asia_shanghai",'
    )
    assert refs(rows) == [AFTER.ref]
    assert rows[0]["order_time_asia_shanghai"] == "2016-10-10 00:30:00"
    assert rows[0]["transaction_time_asia_shanghai"] == "2016-10-13 00:10:00"
    _, before = await get_csv(
        world, "/reports/orders.csv", **{"from": "2016-10-09", "to": "2016-10-09"}
    )
    assert refs(before) == [BEFORE.ref]
    assert before[0]["order_time_asia_shanghai"] == "2016-10-09 23:30:00"
    # By transaction date: AFTER was completed on 13 Oct in Shanghai (12 Oct in UTC).
    _, done = await get_csv(
        world, "/reports/orders.csv", **{"from": "2016-10-13", "to": "2016-10-13"},
        date_type="transaction",
    )  # fmt: skip
    assert refs(done) == [AFTER.ref]
    _, none = await get_csv(
        world, "/reports/orders.csv", **{"from": "2016-10-12", "to": "2016-10-12"},
        date_type="transaction",
    )  # fmt: skip
    assert refs(none) == []
    # The overview's days are the same days.
    for day, ref in (("2016-10-09", BEFORE), ("2016-10-10", AFTER)):
        found = await get_json(world, "/reports/overview", **{"from": day, "to": day})
        assert (found["orders"], found["clicks"]) == (1, 1), day
        assert found["completed_orders"] == (1 if ref is AFTER else 0)


async def test_clicks_fall_on_their_shanghai_day_in_every_traffic_report(world: World) -> None:
    span = {"from": "2016-10-09", "to": "2016-10-10"}
    for group_by in ("day", "day,dp"):  # the rollups, and the raw clicks
        found = await get_json(world, "/reports/traffic", **span, group_by=group_by)
        assert found["time_zone"] == "Asia/Shanghai"
        rows = [(r["day"], r["clicks"]) for r in found["rows"]]
        assert rows == [("2016-10-09", 1), ("2016-10-10", 1)], group_by
    answer, table = await get_csv(world, "/reports/traffic.csv", **span, group_by="day")
    assert answer.headers["x-time-zone"] == "Asia/Shanghai"
    assert [(r["day_asia_shanghai"], r["clicks"]) for r in table] == [
        ("2016-10-09", "1"), ("2016-10-10", "1"),
    ]  # fmt: skip
    sale = await get_json(world, "/reports/traffic", **{"from": str(SALE_DAY), "to": str(SALE_DAY)})
    assert sale["totals"]["clicks"] == 11


async def test_the_rollups_are_the_raw_clicks_counted_by_shanghai_days(world: World) -> None:
    first, last = date(2016, 10, 8), date(2016, 11, 11)
    async with world.pool.acquire() as conn:
        counted = await recount.rollup_tracking_days(conn, first, last)
        assert counted == await recount.recount_tracking_days(conn, first, last, SHANGHAI)
        days = await rollups.days_with_clicks(conn, first, last, SHANGHAI)
        assert date(2016, 10, 10) in days and date(2016, 11, 10) in days
        for day in days:
            await rollups.backfill_day(conn, day, SHANGHAI)
        assert await recount.rollup_tracking_days(conn, first, last) == counted
    assert {key[1] for key in counted} == {
        date(2016, 10, 9), date(2016, 10, 10), SALE_DAY, date(2016, 11, 9), date(2016, 11, 10),
    }  # fmt: skip


# -- the dashboard -------------------------------------------------------------------------------


async def dashboard(world: World, **params: str) -> str:
    client = world.client
    token = CSRF.search((await client.get("/dashboard/login")).text)
    assert token is not None
    signed_in = await client.post(
        "/dashboard/login", data={"api_key": world.key, "csrf": token.group(1)}
    )
    assert signed_in.status_code == 303, signed_in.text
    page = await client.get("/dashboard", params=params)
    assert page.status_code == 200, page.text
    return page.text


def bar(page: str, chart: str, day: str) -> dict[str, str]:
    """The data-* of one day's bar in one chart."""
    section = page.split(f'id="{chart}"')[1].split("</figure>")[0]
    found = re.search(rf'<g class="bar" data-label="{day}" ([^>]*)>', section)
    assert found is not None, (chart, day)
    return dict(re.findall(r'data-([a-z]+)="([^"]*)"', found.group(1)))


async def test_the_dashboard_states_the_zone_and_counts_by_its_days(world: World) -> None:
    page = await dashboard(world, **{"from": "2016-10-09", "to": str(SALE_DAY)})
    assert 'data-time-zone="Asia/Shanghai"' in page
    assert "Days and times are in Asia/Shanghai" in page
    assert "Clicks per day (Asia/Shanghai)" in page and "Orders per day (Asia/Shanghai)" in page
    assert bar(page, "orders-chart", "2016-10-09") == {"completed": "0", "other": "1"}
    assert bar(page, "orders-chart", "2016-10-10") == {"completed": "1", "other": "0"}
    assert bar(page, "orders-chart", str(SALE_DAY)) == {"completed": "2", "other": "2"}
    assert bar(page, "clicks-chart", "2016-10-10") == {"billable": "1", "flagged": "0"}
    assert bar(page, "clicks-chart", str(SALE_DAY)) == {"billable": "10", "flagged": "1"}
    # BEFORE, AFTER and the four of SALE_DAY; completed in time: AFTER, A and B; 12 billable.
    assert "3 completed (within 60 days) of 6 orders" in page
    assert "25.00 %" in page
    top = re.search(r'<tr data-af="glossary">(.*?)</tr>', page)
    assert top is not None
    assert re.findall(r"<td[^>]*>([^<]*)</td>", top.group(1)) == [
        "glossary", "11", "10", "10", "4", "2", "20.00 %",
    ]  # fmt: skip
    download = await world.client.get(
        "/dashboard/export/orders.csv", params={"from": "2016-10-10", "to": "2016-10-10"}
    )
    assert download.status_code == 200
    assert download.headers["x-time-zone"] == "Asia/Shanghai"
    rows = list(csv.DictReader(io.StringIO(download.content.decode("utf-8"))))
    assert refs(rows) == [AFTER.ref]


# -- last: a close credits what the report called completed --------------------------------------


async def test_a_close_credits_the_orders_completed_within_60_days_only(world: World) -> None:
    closed = await world.client.post(
        "/api/v1/periods/2017-01/close", headers=bearer(world.admin_key)
    )
    assert closed.status_code == 200, closed.text
    found = await get_json(world, "/reports/income", **{"from": "2017-01", "to": "2017-01"})
    [period] = found["periods"]
    assert period["state"] == "closed"
    assert D(period["completed_sales"]) < C.amount  # as above: C is not in them
    # Credited at 8 %: AFTER, A and B, completed within their 60 days; C earns nothing.
    assert D(period["credited"]) == (AFTER.amount + A.amount + B.amount) * D("0.08")
    assert period["closed_at"].endswith("+08:00")
