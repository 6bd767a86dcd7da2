"""Properties of the money on real Postgres, over random histories of one publisher:
postbacks (new orders, status changes, replays), admin disqualifications, period closes and
withdrawals, in any order.

- the balance is the sum of the ledger, after every step;
- a postback replayed changes nothing (neither the order nor the ledger);
- an order is credited at most once and charged back at most once, only after its credit;
- a withdrawal never takes the balance below zero.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.core.db import Conn, Pool
from app.money import closing, ledger
from app.money.ledger import WithdrawalRefused
from app.money.periods import Period
from app.orders import store
from app.orders.status import OrderStatus
from app.orders.store import OrderReport
from tests.support.orders import (
    add_click,
    ensure_default_plan,
    new_link,
    new_merchant,
    new_publisher,
)

FIRST_PERIOD = Period.of(2019, 3)


@dataclass
class History:
    publisher_id: int
    merchant_id: int
    link: Any
    open_period: Period = FIRST_PERIOD
    reports: list[OrderReport] = field(default_factory=list)


amounts = st.decimals(min_value=0, max_value=5000, places=2) | st.just(Decimal(0))
S = OrderStatus
# Weighted towards what moves money: completions, then refunds after a credit.
first_statuses = st.sampled_from([S.incomplete, S.completed_payment, S.completed, S.completed])
later_statuses = st.sampled_from([S.completed_payment, S.completed, S.refunded, S.invalid])
days_to_status = st.integers(0, 3) | st.integers(0, 70)  # often within the period
# A history is a few periods, each a few steps and then the period's close.
kinds = st.sampled_from(["order"] * 3 + ["advance", "withdraw"] * 2 + ["replay", "disqualify"])
periods = st.lists(st.lists(kinds, max_size=6), min_size=1, max_size=5)
withdrawals = st.none() | st.decimals(min_value=1, max_value=600, places=2)


async def snapshot(conn: Conn, publisher_id: int) -> tuple[Any, ...]:
    orders = await conn.fetch(
        "SELECT * FROM orders WHERE publisher_id = $1 ORDER BY id", publisher_id
    )
    entries = await conn.fetch(
        "SELECT id, amount FROM ledger WHERE publisher_id = $1 ORDER BY id", publisher_id
    )
    return tuple(map(tuple, orders)), tuple(map(tuple, entries))


async def check_invariants(conn: Conn, publisher_id: int) -> None:
    assert await ledger.balance(conn, publisher_id) == await ledger.ledger_sum(conn, publisher_id)
    bad = await conn.fetchval(
        """SELECT count(*) FROM orders o
           WHERE o.publisher_id = $1 AND (
               (SELECT count(*) FROM ledger WHERE order_id = o.id AND kind = 'credit') > 1
            OR (SELECT count(*) FROM ledger WHERE order_id = o.id AND kind = 'chargeback')
               > (SELECT count(*) FROM ledger WHERE order_id = o.id AND kind = 'credit'))""",
        publisher_id,
    )
    assert bad == 0


async def run_step(
    conn: Conn, pool: Pool, history: History, kind: str, data: st.DataObject
) -> None:
    if kind == "order":
        placed = history.open_period.starts_at(UTC) + timedelta(
            days=data.draw(st.integers(0, 29)), hours=3
        )
        click_id = await add_click(conn, history.link, placed - timedelta(minutes=1))
        report = OrderReport(
            order_ref=uuid.uuid4().hex,
            click_ref=click_id,
            ordered_at=placed,
            amount=data.draw(amounts),
            currency="USD",
            category="home-garden",
            new_buyer=data.draw(st.booleans()),
            status=data.draw(first_statuses),
            status_at=placed + timedelta(days=data.draw(days_to_status)),
        )
        await store.record_postback(conn, history.merchant_id, report)
        history.reports.append(report)
    elif kind == "advance" and history.reports:
        earlier = data.draw(st.sampled_from(history.reports))
        report = replace(
            earlier,
            status=data.draw(later_statuses),
            status_at=earlier.ordered_at + timedelta(days=data.draw(days_to_status)),
        )
        await store.record_postback(conn, history.merchant_id, report)
        history.reports.append(report)
    elif kind == "replay" and history.reports:
        report = data.draw(st.sampled_from(history.reports))
        await store.record_postback(conn, history.merchant_id, report)  # bring it up to date
        before = await snapshot(conn, history.publisher_id)
        for _ in range(3):
            _, outcome = await store.record_postback(conn, history.merchant_id, report)
            assert outcome is store.RecordOutcome.unchanged
        assert await snapshot(conn, history.publisher_id) == before
    elif kind == "disqualify" and history.reports:
        report = data.draw(st.sampled_from(history.reports))
        order_id = await conn.fetchval(
            "SELECT id FROM orders WHERE merchant_id = $1 AND order_ref = $2",
            history.merchant_id,
            report.order_ref,
        )
        await store.disqualify(conn, order_id, "property test")
    elif kind == "close":
        now = history.open_period.ends_at(UTC) + timedelta(days=400)
        closed = await closing.close_period(
            pool, history.open_period, UTC, now, publisher_id=history.publisher_id
        )
        history.open_period = history.open_period.next()
        for done in closed.closed:  # shown by --hypothesis-show-statistics
            if done.orders_credited:
                event("a close credited orders")
            if done.orders_charged_back:
                event("a close charged back orders")
    elif kind == "withdraw":
        try:
            await ledger.request_withdrawal(
                conn,
                history.publisher_id,
                data.draw(withdrawals),
                minimum_balance=Decimal(16),
                fee=Decimal(15),
            )
        except WithdrawalRefused:
            event("withdrawal refused")
            return
        event("withdrawal made")
        assert await ledger.balance(conn, history.publisher_id) >= 0


@pytest.fixture(scope="module")
async def merchant(pool: Pool) -> int:
    async with pool.acquire() as conn:
        await ensure_default_plan(conn)
        merchant_id, _ = await new_merchant(conn)
    return merchant_id


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=periods, data=st.data())
async def test_balance_is_the_ledger_and_replays_change_nothing(
    pool: Pool, merchant: int, script: list[list[str]], data: st.DataObject
) -> None:
    async with pool.acquire() as conn:
        publisher_id = await new_publisher(conn, "Property")
        history = History(publisher_id, merchant, await new_link(conn, publisher_id))
        for steps in script:
            for kind in [*steps, "close"]:
                await run_step(conn, pool, history, kind, data)
                await check_invariants(conn, publisher_id)
        # Whatever happened, closing what is left (orders complete up to 60 days later)
        # keeps the same invariants.
        for _ in range(3):
            await run_step(conn, pool, history, "close", data)
            await check_invariants(conn, publisher_id)


def test_first_period_is_in_the_past() -> None:
    assert FIRST_PERIOD.ends_at(UTC) < datetime.now(UTC)
