"""Properties of the money on real Postgres, over random histories of one publisher:
postbacks (new orders, status changes, replays), admin disqualifications, period closes and
withdrawals, in any order.

- the balance is the sum of the ledger, after every step;
- a postback replayed changes nothing (neither the order nor the ledger);
- an order is credited at most once and charged back at most once, only after its credit;
- a withdrawal never takes the balance below zero;
- after a close, every credited order holds in the ledger exactly the commission it earns
  now (its current amount, the incentive its period earns now: what the estimate says), or
  nothing once charged back: the orders' commissions sum to the ledger;
- a close run twice changes nothing;
- the same postbacks (partial refunds included) delivered in any order, with the periods
  closed at any points in between, leave the same balance and the same commission per order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.core.db import Conn, Pool
from app.money import closing, ledger
from app.money.earnings import CommissionEstimator
from app.money.periods import Period
from app.money.plan import WithdrawalRules
from app.money.withdrawal_rules import WithdrawalCalendar, WithdrawalRefused
from app.money.withdrawals import request_withdrawal
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
later_statuses = st.sampled_from(
    [S.completed_payment, S.completed, S.partially_refunded, S.refunded, S.invalid]
)
left_after_refund = st.decimals(min_value="0.01", max_value="0.99", places=2)
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


async def check_commissions_due(conn: Conn, publisher_id: int, tz: tzinfo = UTC) -> None:
    """Right after a close: each credited order holds what it earns now, or nothing."""
    estimator = await CommissionEstimator.load(conn, publisher_id, tz)
    orders = await store.list_orders(conn, store.OrderQuery(publisher_id=publisher_id), limit=500)
    for order in orders:
        if order.commission is None:
            continue
        if order.charged_back is not None:
            assert order.commission + order.charged_back == 0
            continue
        assert order.qualifies
        due = await estimator.commission(
            order.amount, order.category, order.new_buyer, order.ordered_at
        )
        assert order.commission == due, order
    in_orders = sum((o.commission or 0) + (o.charged_back or 0) for o in orders)
    about_orders = await conn.fetchval(
        """SELECT coalesce(sum(amount), 0) FROM ledger
           WHERE publisher_id = $1 AND order_id IS NOT NULL""",
        publisher_id,
    )
    assert in_orders == about_orders


async def advance(conn: Conn, history: History, data: st.DataObject) -> None:
    """A later status of an order reported before."""
    earlier = data.draw(st.sampled_from(history.reports))
    status = data.draw(later_statuses)
    # The amount first reported; a partial refund leaves part of it.
    amount = next(r.amount for r in history.reports if r.order_ref == earlier.order_ref)
    if status is S.partially_refunded:
        amount = (amount * data.draw(left_after_refund)).quantize(Decimal("0.01"))
        if amount <= 0:
            return
    report = replace(
        earlier,
        status=status,
        amount=amount,
        status_at=earlier.ordered_at + timedelta(days=data.draw(days_to_status)),
    )
    await store.record_postback(conn, history.merchant_id, report)
    history.reports.append(report)


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
        await advance(conn, history, data)
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
        await check_commissions_due(conn, history.publisher_id)
        before = await snapshot(conn, history.publisher_id)
        again = await closing.close_period(
            pool, history.open_period, UTC, now, publisher_id=history.publisher_id
        )
        assert again.closed == [] and await snapshot(conn, history.publisher_id) == before
        history.open_period = history.open_period.next()
        for done in closed.closed:  # shown by --hypothesis-show-statistics
            if done.orders_credited:
                event("a close credited orders")
            if done.orders_charged_back:
                event("a close charged back orders")
    elif kind == "withdraw":
        try:
            await request_withdrawal(
                conn,
                history.publisher_id,
                data.draw(withdrawals),
                rules=WithdrawalRules(Decimal(16), Decimal(15)),
                calendar=WithdrawalCalendar(last_day=31, preceding_months_only=False),
                now=datetime.now(UTC),
                actor="test",
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


# -- The same postbacks in any order ------------------------------------------------------

SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRST_OF_FACTS = Period.of(2019, 9)
# Large orders reach the 400,000 tier in a period; small ones test the rounding.
_big = st.sampled_from([Decimal("400000.00"), Decimal("250000.00"), Decimal("150000.00")])
fact_amounts = _big | _big | st.decimals(min_value="0.01", max_value=2000, places=2)


@dataclass(frozen=True)
class Fact:
    """One postback of one order, as offsets from the first period's start."""

    order: int
    status: OrderStatus
    days: float  # when the status took effect
    amount: Decimal


@st.composite
def order_facts(draw: st.DrawFn, order: int) -> tuple[float, Decimal, bool, list[Fact]]:
    """An order (placed when, amount, new buyer) and its postbacks, consistent with one
    another: completed, then maybe partly refunded, several times, then maybe refunded."""
    placed = draw(st.integers(0, 40)) + 0.25
    amount = draw(fact_amounts)
    done = placed + draw(st.integers(0, 20))
    facts = [
        Fact(order, S.completed_payment, placed, amount),
        Fact(order, S.completed, done, amount),
    ]
    left, at_day = amount, done
    for part in draw(st.lists(left_after_refund, max_size=2)):
        lowered = (left * part).quantize(Decimal("0.01"))
        if Decimal("0.01") <= lowered < left:
            at_day += draw(st.integers(0, 10))
            facts.append(Fact(order, S.partially_refunded, at_day, lowered))
            left = lowered
    final = draw(st.sampled_from([None, None, S.refunded, S.invalid]))
    if final is not None:
        facts.append(Fact(order, final, at_day + draw(st.integers(0, 10)), left))
    return placed, amount, draw(st.booleans()), facts


OrderFacts = tuple[float, Decimal, bool, list[Fact]]
Run = tuple[list[Fact], list[int]]  # arrival order, and after which postbacks to close


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[OrderFacts], list[Run]]:
    orders = [draw(order_facts(i)) for i in range(draw(st.integers(2, 6)))]
    facts = [f for _, _, _, fs in orders for f in fs]
    runs = []
    for _ in range(2):  # two publishers: their own arrival order, their own close points
        arrival = draw(st.permutations(facts))
        closes = sorted(draw(st.lists(st.integers(0, len(facts)), min_size=4, max_size=4)))
        runs.append((arrival, closes))
    return orders, runs


async def deliver_and_close(
    pool: Pool,
    conn: Conn,
    orders: list[tuple[float, Decimal, bool, list[Fact]]],
    arrival: list[Fact],
    closes: list[int],
) -> tuple[Decimal, dict[int, Decimal]]:
    """One publisher: its postbacks in ``arrival`` order, the periods closed in turn after
    the postbacks numbered in ``closes``, then everything closed. The balance, and the money
    of each order."""
    publisher_id = await new_publisher(conn, "Arrival order")
    link = await new_link(conn, publisher_id)
    merchant_id, _ = await new_merchant(conn)
    start = FIRST_OF_FACTS.starts_at(SHANGHAI)
    clicks = [
        await add_click(conn, link, start + timedelta(days=placed, minutes=-1))
        for placed, _, _, _ in orders
    ]
    now, period = datetime.now(UTC), FIRST_OF_FACTS

    async def close(upto: Period) -> None:
        await closing.close_period(pool, upto, SHANGHAI, now, publisher_id=publisher_id)

    for number, fact in enumerate(arrival):
        while closes and closes[0] == number:
            closes.pop(0)
            await close(period)
            period = period.next()
        placed, _, new_buyer, _ = orders[fact.order]
        report = OrderReport(
            order_ref=f"P-{fact.order}",
            click_ref=clicks[fact.order],
            ordered_at=start + timedelta(days=placed),
            amount=fact.amount,
            currency="USD",
            category="home-garden",
            new_buyer=new_buyer,
            status=fact.status,
            status_at=start + timedelta(days=fact.days),
        )
        await store.record_postback(conn, merchant_id, report)
    await close(Period.of(2020, 1))  # every period left, after every postback
    await check_commissions_due(conn, publisher_id, SHANGHAI)
    kinds = await conn.fetch(
        "SELECT DISTINCT kind FROM ledger WHERE publisher_id = $1", publisher_id
    )
    for row in kinds:  # shown by --hypothesis-show-statistics
        event(f"a close posted a {row['kind']} entry")
    found = await store.list_orders(conn, store.OrderQuery(publisher_id=publisher_id))
    zero = Decimal(0)
    money = {int(o.order_ref[2:]): (o.commission or zero) + (o.charged_back or zero) for o in found}
    return await ledger.balance(conn, publisher_id), money


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=deliveries())
async def test_any_arrival_order_and_close_points_give_the_same_money(
    pool: Pool, merchant: int, plan: tuple[Any, ...]
) -> None:
    orders, runs = plan
    async with pool.acquire() as conn:
        results = [
            await deliver_and_close(pool, conn, orders, arrival, list(closes))
            for arrival, closes in runs
        ]
    (balance, money), (other_balance, other_money) = results
    assert money == other_money
    assert balance == other_balance == sum(money.values(), Decimal(0))
    if any(m for m in money.values()):
        event("the orders earned something")
