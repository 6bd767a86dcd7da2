"""Order and commission caps enforced at attribution, on real Postgres (app/caps/orders.py):
the order over the cap is declined and kept, windows turn in the period time zone, racing
orders never take a cap over its limit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.caps import store as caps_store
from app.caps.model import CapMetric, CapSpec
from app.caps.screening import order_screening
from app.caps.windows import CapPeriod
from app.core.db import Pool
from app.links import model as link_model
from app.orders.status import OrderStatus
from app.orders.store import OrderReport, record_postback
from app.settings import Settings
from tests.support.accounts import app_on, bearer
from tests.support.orders import (
    add_click,
    ensure_default_plan,
    new_link,
    new_merchant,
    new_publisher,
    order_body,
    signed,
)

NOW = datetime.now(UTC).replace(microsecond=0)
LA = ZoneInfo("America/Los_Angeles")


@dataclass
class Shop:
    """A merchant reporting the orders of one publisher's link."""

    pool: Pool
    client: httpx.AsyncClient
    merchant_id: int
    secret: str
    publisher_id: int
    link: link_model.Link

    async def order(
        self,
        placed: datetime,
        amount: str = "10.00",
        *,
        cn: str | None = None,
        link: link_model.Link | None = None,
    ) -> dict[str, Any]:
        """Report an order on a fresh click of ``link`` (default: the shop's); the order's
        row after its postback."""
        async with self.pool.acquire() as conn:
            click_id = await add_click(
                conn, link or self.link, placed - timedelta(minutes=3), cn=cn
            )
        ref = f"CAP-{uuid.uuid4().hex[:12]}"
        body = order_body(ref, click_id, placed, amount)
        sent = signed(self.merchant_id, self.secret, body)
        response = await self.client.post("/api/v1/postback", content=body, headers=sent)
        assert response.status_code == 200, response.text
        row = await self.pool.fetchrow(
            "SELECT * FROM orders WHERE merchant_id = $1 AND order_ref = $2", self.merchant_id, ref
        )
        assert row is not None
        return dict(row)

    async def cap(
        self,
        metric: CapMetric,
        period: CapPeriod,
        cap: int,
        *,
        link_id: int | None = None,
        campaign: str | None = None,
    ) -> int:
        async with self.pool.acquire() as conn:
            spec = CapSpec(self.publisher_id, metric, period, cap, link_id, campaign)
            return (await caps_store.create_cap(conn, spec)).id

    async def used(self, cap_id: int) -> list[tuple[date, int]]:
        rows = await self.pool.fetch(
            "SELECT window_start, used FROM cap_usage WHERE cap_id = $1 ORDER BY 1", cap_id
        )
        return [(r["window_start"], r["used"]) for r in rows]


async def open_shop(pool: Pool, client: httpx.AsyncClient) -> Shop:
    async with pool.acquire() as conn:
        await ensure_default_plan(conn)
        merchant_id, secret = await new_merchant(conn)
        publisher_id = await new_publisher(conn, "Capped")
        link = await new_link(conn, publisher_id)
    return Shop(pool, client, merchant_id, secret, publisher_id, link)


@pytest.fixture
async def shop(pool: Pool, app_client: httpx.AsyncClient) -> Shop:
    return await open_shop(pool, app_client)


@pytest.fixture
async def la_shop(pool: Pool, settings: Settings) -> AsyncIterator[Shop]:
    """A shop on an app whose period time zone is America/Los_Angeles."""
    async with app_on(settings.model_copy(update={"period_timezone": str(LA)})) as client:
        yield await open_shop(pool, client)


def day_at(day: date, hour: int, tz: Any = UTC) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=tz)


async def test_an_order_over_the_cap_is_declined_and_kept(
    shop: Shop, admin_key: str, app_client: httpx.AsyncClient
) -> None:
    cap_id = await shop.cap(CapMetric.orders, CapPeriod.day, 3)
    day = (NOW - timedelta(days=3)).date()
    first = [await shop.order(day_at(day, hour)) for hour in (1, 2, 3)]
    assert [o["attribution"] for o in first] == ["attributed"] * 3
    assert all(o["declined_cap_id"] is None for o in first)
    fourth = await shop.order(day_at(day, 4))
    assert fourth["attribution"] == "declined"
    assert fourth["declined_cap_id"] == cap_id
    assert fourth["declined_at"] is not None
    # Kept, tied to its click and publisher, and shown as declined.
    assert fourth["publisher_id"] == shop.publisher_id
    answer = await app_client.get(f"/api/v1/orders/{fourth['id']}", headers=bearer(admin_key))
    assert answer.status_code == 200, answer.text
    assert answer.json()["attribution"] == "declined"
    assert answer.json()["declined_cap_id"] == cap_id
    # The next day's window counts from zero.
    next_day = await shop.order(day_at(day + timedelta(days=1), 0))
    assert next_day["attribution"] == "attributed"
    assert await shop.used(cap_id) == [(day, 3), (day + timedelta(days=1), 1)]


async def test_a_declined_order_never_earns(shop: Shop, admin_key: str) -> None:
    await shop.cap(CapMetric.orders, CapPeriod.month, 0)
    declined = await shop.order(NOW - timedelta(days=1))
    assert declined["attribution"] == "declined"
    # Completed, it still earns nothing: every money query reads attributed orders only.
    body = order_body(
        declined["order_ref"],
        declined["click_ref"],
        declined["ordered_at"],
        "10.00",
        status="completed",
        status_time=NOW,
    )
    sent = signed(shop.merchant_id, shop.secret, body)
    response = await shop.client.post("/api/v1/postback", content=body, headers=sent)
    assert response.status_code == 200, response.text
    assert response.json()["attribution"] == "declined"
    answer = await shop.client.get(f"/api/v1/orders/{declined['id']}", headers=bearer(admin_key))
    assert answer.json()["qualifies"] is False


async def test_50_racing_orders_fill_a_commission_cap_to_the_cent(shop: Shop) -> None:
    # 12.34 at the default plan's 8 % is 0.9872, rounded once: 0.99. A cap of 10.00 holds 10.
    cap_id = await shop.cap(CapMetric.commission, CapPeriod.day, 1000)
    placed = NOW - timedelta(hours=2)
    rows = await asyncio.gather(*(shop.order(placed, "12.34") for _ in range(50)))
    attributed = [r for r in rows if r["attribution"] == "attributed"]
    declined = [r for r in rows if r["attribution"] == "declined"]
    assert len(attributed) == 10
    assert len(declined) == 40
    assert {r["declined_cap_id"] for r in declined} == {cap_id}
    [(_, used)] = await shop.used(cap_id)
    assert used == 990 == 99 * len(attributed)
    assert used + 99 > 1000  # no order that would have fit was left out


async def test_50_racing_orders_against_an_order_cap_let_exactly_10_through(
    pool: Pool, settings: Settings
) -> None:
    """Straight to the store, on separate connections: 50 transactions at once."""
    async with app_on(settings) as client:
        shop = await open_shop(pool, client)
    cap_id = await shop.cap(CapMetric.orders, CapPeriod.calculation_period, 10)
    placed = NOW - timedelta(hours=1)
    async with pool.acquire() as conn:
        clicks = [
            await add_click(conn, shop.link, placed - timedelta(minutes=1)) for _ in range(50)
        ]
    screening = order_screening(settings)

    async def one(click_id: str) -> str:
        report = OrderReport(
            f"R-{uuid.uuid4().hex[:12]}",
            click_id,
            placed,
            Decimal("20.00"),
            "USD",
            "home-garden",
            False,
            OrderStatus.incomplete,
            placed,
        )
        async with pool.acquire() as conn:
            order, _ = await record_postback(conn, shop.merchant_id, report, screening=screening)
        return order.attribution.value

    outcomes = await asyncio.gather(*(one(c) for c in clicks))
    assert outcomes.count("attributed") == 10
    assert outcomes.count("declined") == 40
    assert [used for _, used in await shop.used(cap_id)] == [10]


async def test_link_and_campaign_caps_count_only_their_orders(pool: Pool, shop: Shop) -> None:
    async with pool.acquire() as conn:
        other_link = await new_link(conn, shop.publisher_id)
    link_cap = await shop.cap(CapMetric.orders, CapPeriod.day, 1, link_id=other_link.id)
    campaign_cap = await shop.cap(CapMetric.orders, CapPeriod.day, 1, campaign="spring")
    placed = NOW - timedelta(hours=5)
    # Neither cap covers the shop's own link without the campaign: no limit.
    free = [await shop.order(placed) for _ in range(3)]
    assert [o["attribution"] for o in free] == ["attributed"] * 3
    assert (await shop.order(placed, link=other_link))["attribution"] == "attributed"
    over = await shop.order(placed, link=other_link)
    assert (over["attribution"], over["declined_cap_id"]) == ("declined", link_cap)
    assert (await shop.order(placed, cn="spring"))["attribution"] == "attributed"
    over = await shop.order(placed, cn="spring")
    assert (over["attribution"], over["declined_cap_id"]) == ("declined", campaign_cap)
    assert (await shop.order(placed, cn="summer"))["attribution"] == "attributed"
    assert [u for _, u in await shop.used(link_cap)] == [1]
    assert [u for _, u in await shop.used(campaign_cap)] == [1]


async def test_a_disabled_cap_counts_nothing(shop: Shop) -> None:
    cap_id = await shop.cap(CapMetric.orders, CapPeriod.day, 0)
    async with shop.pool.acquire() as conn:
        found = await caps_store.get_cap(conn, cap_id)
        assert found is not None
        await caps_store.update_cap(conn, found, enabled=False)
    placed = NOW - timedelta(hours=6)
    assert (await shop.order(placed))["attribution"] == "attributed"
    assert await shop.used(cap_id) == []


async def test_each_order_counts_against_every_cap_it_falls_under(shop: Shop) -> None:
    orders_cap = await shop.cap(CapMetric.orders, CapPeriod.month, 100)
    commission_cap = await shop.cap(CapMetric.commission, CapPeriod.month, 150)  # 1.50
    placed = NOW - timedelta(hours=7)
    # 10.00 at 8 % is 0.80: the first fits, the second would make 1.60.
    assert (await shop.order(placed))["attribution"] == "attributed"
    second = await shop.order(placed)
    assert (second["attribution"], second["declined_cap_id"]) == ("declined", commission_cap)
    # Declined by one cap, it counted against none.
    assert [u for _, u in await shop.used(orders_cap)] == [1]
    assert [u for _, u in await shop.used(commission_cap)] == [80]


async def test_calculation_period_windows_turn_on_the_10th_in_the_zone(la_shop: Shop) -> None:
    cap_id = await la_shop.cap(CapMetric.orders, CapPeriod.calculation_period, 1)
    ninth = await la_shop.order(datetime(2026, 3, 9, 23, 30, tzinfo=LA))  # 10 March in UTC
    tenth = await la_shop.order(datetime(2026, 3, 10, 0, 30, tzinfo=LA))
    later = await la_shop.order(datetime(2026, 4, 9, 20, 0, tzinfo=LA))
    assert [o["attribution"] for o in (ninth, tenth, later)] == [
        "attributed",
        "attributed",
        "declined",
    ]
    assert await la_shop.used(cap_id) == [(date(2026, 2, 10), 1), (date(2026, 3, 10), 1)]


async def test_month_windows_turn_on_the_1st_in_the_zone(la_shop: Shop) -> None:
    cap_id = await la_shop.cap(CapMetric.orders, CapPeriod.month, 1)
    last = await la_shop.order(datetime(2026, 1, 31, 22, 0, tzinfo=LA))  # February in UTC
    first = await la_shop.order(datetime(2026, 2, 1, 1, 0, tzinfo=LA))
    again = await la_shop.order(datetime(2026, 2, 28, 23, 0, tzinfo=LA))
    assert [o["attribution"] for o in (last, first, again)] == [
        "attributed",
        "attributed",
        "declined",
    ]
    assert await la_shop.used(cap_id) == [(date(2026, 1, 1), 1), (date(2026, 2, 1), 1)]
