"""Reports on real Postgres, from a scripted history of clicks and orders.

Clicks go through the stream and the real flusher (some twice: a re-delivery), orders
through signed postbacks, periods are closed through the API. Every expected figure is
worked out here, in plain Python over the script, not by the code under test. Days are those
of the period time zone, whichever it is (``CLICKTRACK_PERIOD_TIMEZONE`` may set it).
"""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager

from app.accounts.apikeys import Role, create_key
from app.clicks.record import Click, Flag
from app.core.db import Pool
from app.main import create_app
from app.money.periods import Month, Period
from app.settings import Settings
from tests.conftest import TEST_REDIS_URL
from tests.support.orders import ensure_default_plan, new_merchant, order_body, signed
from tests.support.reports import EPOCH, click, flush, own_database, own_pool
from tests.support.zones import label, local_day, local_time, local_today

D = Decimal
CENT = D("0.01")
ZERO = D("0.00")
EVIL = '=HYPERLINK("http://evil.example.org","x")'
AFS = [None, "", "blog", EVIL, "新闻"]
CNS = [None, "spring"]
CVS = [None, "banner", "+1"]
DPS = [None, "u-1", "u-2", "-x"]
FLAGS = [Flag.bot, Flag.duplicate, Flag.head]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ts(c: Click) -> datetime:
    return EPOCH + timedelta(microseconds=c.ts_us)


@dataclass
class ScriptedOrder:
    ref: str
    placed: datetime
    amount: Decimal
    status: str
    completed: datetime | None
    af: str | None
    cn: str | None
    cv: str | None
    dp: str | None
    link: str
    attributed: bool = True
    new_buyer: bool = False
    category: str = "home-garden"
    commission: Decimal = ZERO  # what the CSV must say
    commission_status: str = "none"
    click_id: str = ""
    credited_rate: str = ""  # the rate of its credit, in percent (plan Table 1 or 3)


@dataclass
class History:
    client: httpx.AsyncClient
    pool: Pool
    settings: Settings
    key: str
    other_key: str
    admin_key: str
    publisher_id: int
    codes: dict[int, str]  # link id -> code
    clicks: list[Click] = field(default_factory=list)  # each once
    orders: list[ScriptedOrder] = field(default_factory=list)
    ledger: list[tuple[datetime, Decimal]] = field(default_factory=list)  # effective, amount


def rate(amount: Decimal, percent: int) -> Decimal:
    return (amount * percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)


async def post_order(
    client: httpx.AsyncClient, merchant: tuple[int, str], order: ScriptedOrder
) -> None:
    status_time = order.completed if order.status == "completed" else order.placed
    body = order_body(
        order.ref,
        order.click_id,
        order.placed,
        order.amount,
        status=order.status,
        status_time=status_time,
        category=order.category,
        new_buyer=order.new_buyer,
    )
    answer = await client.post("/api/v1/postback", content=body, headers=signed(*merchant, body))
    assert answer.status_code == 200, answer.text


def traffic_clicks(publisher_id: int, codes: dict[int, str], today: date) -> list[Click]:
    rng = random.Random(9)
    made = []
    for _ in range(400):
        day = today - timedelta(days=rng.randrange(2, 7))
        when = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(86_400)
        )
        link_id = rng.choice(list(codes))
        made.append(
            click(
                when,
                link_id,
                publisher_id,
                f"s{rng.randrange(15)}",
                af=rng.choice(AFS),
                cn=rng.choice(CNS),
                cv=rng.choice(CVS),
                dp=rng.choice(DPS),
                flags=int(rng.choice(FLAGS)) if rng.random() < 0.15 else 0,
                code=codes[link_id],
            )
        )
    return made


async def script(history: History, redis: aioredis.Redis, link_ids: list[int]) -> None:
    client, settings, pool = history.client, history.settings, history.pool
    now = datetime.now(UTC)
    tz = settings.period_tz
    current = Period.containing(now, tz)
    p1, p0 = current.previous(), current.previous().previous()
    publisher = history.publisher_id
    async with pool.acquire() as conn:
        await ensure_default_plan(conn)
        merchant = await new_merchant(conn)
    admin = bearer(history.admin_key)

    traffic = traffic_clicks(publisher, history.codes, now.date())
    written = await flush(settings, redis, pool, traffic)
    assert written == len(traffic)
    assert await flush(settings, redis, pool, traffic[:100]) == 0  # re-delivered: no rows
    history.clicks += traffic

    def order(placed: datetime, amount: str, status: str, **kw: Any) -> ScriptedOrder:
        completed = kw.pop("completed", None)
        return ScriptedOrder(
            f"O-{uuid.uuid4().hex[:8]}",
            placed,
            D(amount),
            status,
            completed,
            kw.pop("af", "blog"),
            kw.pop("cn", None),
            kw.pop("cv", None),
            kw.pop("dp", None),
            history.codes[link_ids[0]],
            **kw,
        )

    async def place(scripted: ScriptedOrder, flags: int = 0) -> None:
        made = click(
            scripted.placed,
            link_ids[0],
            publisher,
            f"buyer-{scripted.ref}",
            af=scripted.af,
            cn=scripted.cn,
            cv=scripted.cv,
            dp=scripted.dp,
            flags=flags,
            code=scripted.link,
        )
        assert await flush(settings, redis, pool, [made]) == 1
        history.clicks.append(made)
        scripted.click_id = made.click_id
        await post_order(client, merchant, scripted)
        history.orders.append(scripted)

    # Two periods ago: A completes and is credited; B is credited, then refunded and charged
    # back by the next close.
    start = p0.starts_at(tz) + timedelta(days=1)
    a = order(start, "100.00", "completed", completed=start + timedelta(days=2))
    b = order(start, "55.55", "completed", completed=start + timedelta(days=3), new_buyer=True)
    await place(a)
    await place(b)
    closed = await client.post(f"/api/v1/periods/{p0}/close", headers=admin)
    assert closed.status_code == 200, closed.text
    a.commission, a.commission_status = rate(a.amount, 8), "credited"
    a.credited_rate = "8"
    history.ledger.append((p0.ends_at(tz), rate(a.amount, 8)))
    history.ledger.append((p0.ends_at(tz), rate(b.amount, 14)))
    b.status = "refunded"
    await post_order(client, merchant, b)  # the same facts: only the status moves
    closed = await client.post(f"/api/v1/periods/{p1}/close", headers=admin)
    assert closed.status_code == 200, closed.text
    b.commission, b.commission_status = D("0.00"), "charged_back"
    b.credited_rate = "14"  # credited, then charged back: the credit's rate stays
    history.ledger.append((p1.ends_at(tz), -rate(b.amount, 14)))

    # This period: open orders earn an estimate; refunded ones and flagged clicks nothing.
    begun = current.starts_at(tz)

    def between(k: int) -> datetime:  # strictly inside (period start, now)
        return begun + (now - begun) * k / 6

    c = order(between(1), "20.00", "incomplete", af=EVIL, dp="-x", cv="+1")
    d = order(
        between(2),
        "250.00",
        "completed",
        completed=between(3),
        new_buyer=True,
        category="computer-office/tablets",  # excluded from new-buyer rates: 8 %
        cn="spring",
    )
    e = order(between(3), "30.00", "refunded")
    f = order(between(4), "40.00", "completed", completed=between(5), attributed=False)
    c.commission, c.commission_status = rate(c.amount, 8), "estimated"
    d.commission, d.commission_status = rate(d.amount, 8), "estimated"
    for scripted in (c, d, e):
        await place(scripted)
    await place(f, flags=int(Flag.iframe))


@pytest.fixture(scope="module")
async def history() -> AsyncIterator[History]:
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
                    ids = []
                    for name in ("Reporting Blog", "Someone Else"):
                        ids.append(
                            await conn.fetchval(
                                "INSERT INTO publishers (name) VALUES ($1) RETURNING id", name
                            )
                        )
                    _, key = await create_key(conn, Role.publisher, ids[0])
                    _, other_key = await create_key(conn, Role.publisher, ids[1])
                codes = {}
                for code in ("blogA", "blogB"):
                    made = await client.post(
                        "/api/v1/links",
                        headers=bearer(key),
                        json={"destination": "https://shop.example.com/x", "code": code},
                    )
                    assert made.status_code == 201, made.text
                    link_id = await pool.fetchval("SELECT id FROM links WHERE code = $1", code)
                    codes[link_id] = code
                found = History(client, pool, settings, key, other_key, admin_key, ids[0], codes)
                await script(found, redis, list(codes))
                yield found
        finally:
            keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()


# -- expected figures, from the script -------------------------------------------------------


def dim_value(history: History, c: Click, name: str) -> object:
    if name == "day":
        return local_day(ts(c), history.settings.period_tz).isoformat()
    if name == "link":
        return history.codes[c.link_id]
    value: object = getattr(c, name)
    return value


def expected_traffic(
    history: History,
    group_by: Sequence[str],
    first: date,
    last: date,
    **filters: str,
) -> dict[tuple[object, ...], tuple[int, int, int]]:
    """(clicks, unique clicks, flagged) per group: a unique click is a session's first
    billable click per (day, link, af, cn, cv) (and dp, when the report is by dp)."""
    groups: dict[tuple[object, ...], list[Any]] = defaultdict(lambda: [0, set(), 0])
    by_dp = "dp" in group_by or "dp" in filters
    for c in history.clicks:
        day = local_day(ts(c), history.settings.period_tz)
        if not first <= day <= last:
            continue
        if any(dim_value(history, c, k) != v for k, v in filters.items()):
            continue
        counts = groups[tuple(dim_value(history, c, d) for d in group_by)]
        counts[0] += 1
        if c.flags:
            counts[2] += 1
        else:
            counts[1].add((day, c.link_id, c.af, c.cn, c.cv, c.dp if by_dp else 0, c.session_id))
    return {k: (v[0], len(v[1]), v[2]) for k, v in groups.items()}


def report_rows(body: dict[str, Any], group_by: Sequence[str]) -> dict[tuple[object, ...], Any]:
    found = {}
    for row in body["rows"]:
        assert set(row) == {*group_by, "clicks", "billable_clicks", "unique_clicks", "flagged"
                            "_clicks"}  # fmt: skip
        assert row["billable_clicks"] == row["clicks"] - row["flagged_clicks"]
        key = tuple(row[d] for d in group_by)
        found[key] = (row["clicks"], row["unique_clicks"], row["flagged_clicks"])
    return found


# -- traffic ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group_by", "filters"),
    [
        ("day", {}),
        ("link", {}),
        ("day,link", {}),
        ("af", {}),
        ("af,cn,cv", {}),
        ("link,cv", {"af": "blog"}),
        ("day", {"cn": "spring"}),
        ("dp", {}),
        ("day,dp", {"af": "blog"}),
        ("", {}),
    ],
)
async def test_traffic_report_matches_the_script(
    history: History, group_by: str, filters: dict[str, str]
) -> None:
    today = local_today(history.settings.period_tz)
    first, last = today - timedelta(days=20), today
    params = {"from": str(first), "to": str(last), "group_by": group_by, **filters}
    answer = await history.client.get(
        "/api/v1/reports/traffic", params=params, headers=bearer(history.key)
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    dims = [d for d in group_by.split(",") if d]
    expected = expected_traffic(history, dims, first, last, **filters)
    assert report_rows(body, dims) == expected
    assert body["source"] == ("clicks" if "dp" in group_by else "rollups")
    assert body["truncated"] is False
    total = body["totals"]
    assert (total["clicks"], total["unique_clicks"], total["flagged_clicks"]) == tuple(
        sum(v[n] for v in expected.values()) for n in range(3)
    )
    assert total["clicks"] > 0


async def test_traffic_csv_is_the_json_report_with_safe_cells(history: History) -> None:
    today = local_today(history.settings.period_tz)
    params = {"from": str(today - timedelta(days=20)), "to": str(today), "group_by": "day,af"}
    headers = bearer(history.key)
    answer = await history.client.get("/api/v1/reports/traffic.csv", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in answer.headers["content-disposition"]
    assert answer.headers["x-time-zone"] == history.settings.period_timezone
    table = list(csv.reader(io.StringIO(answer.content.decode("utf-8"))))
    header = [
        f"day_{label(history.settings.period_tz)}",
        "af",
        "clicks",
        "billable_clicks",
        "unique_clicks",
        "flagged_clicks",
    ]
    assert table[0] == header
    body = (
        await history.client.get("/api/v1/reports/traffic", params=params, headers=headers)
    ).json()
    assert body["time_zone"] == history.settings.period_timezone
    as_text = [
        [row["day"], "'" + EVIL if row["af"] == EVIL else row["af"] or ""]
        + [str(row[name]) for name in header[2:]]
        for row in body["rows"]
    ]
    assert table[1:] == as_text
    assert any(cells[1] == "'" + EVIL for cells in table)


async def test_a_report_with_a_limit_says_it_is_truncated(history: History) -> None:
    today = local_today(history.settings.period_tz)
    params = {"from": str(today - timedelta(days=20)), "group_by": "day,link,af", "limit": "3"}
    body = (
        await history.client.get(
            "/api/v1/reports/traffic", params=params, headers=bearer(history.key)
        )
    ).json()
    assert body["truncated"] is True and len(body["rows"]) == 3
    everything = expected_traffic(history, [], today - timedelta(days=20), today)[()]
    assert body["totals"]["clicks"] == everything[0]


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"group_by": "day,day"}, "twice"),
        ({"group_by": "week"}, "group_by"),
        ({"from": "2026-01-10", "to": "2026-01-01"}, "before"),
        ({"from": "2020-01-01", "to": "2026-01-01"}, "at most 366"),
        ({"group_by": "dp", "from": "2026-01-01", "to": "2026-03-01"}, "raw clicks"),
        ({"to": "0001-01-05"}, "days run from 1970-01-01"),
        ({"from": "9999-12-01", "to": "9999-12-31"}, "days run from 1970-01-01"),
    ],
)
async def test_bad_report_parameters_are_refused(
    history: History, params: dict[str, str], problem: str
) -> None:
    answer = await history.client.get(
        "/api/v1/reports/traffic", params=params, headers=bearer(history.key)
    )
    assert answer.status_code == 422
    assert problem in answer.json()["message"]


async def test_reports_are_scoped_to_the_callers_publisher(history: History) -> None:
    mine = {"publisher_id": str(history.publisher_id)}
    for path in ("traffic", "overview", "income", "orders.csv", "traffic.csv"):
        url = f"/api/v1/reports/{path}"
        other = await history.client.get(url, params=mine, headers=bearer(history.other_key))
        assert other.status_code == 404, path
        anonymous = await history.client.get(url)
        assert anonymous.status_code == 401, path
        admin_without = await history.client.get(url, headers=bearer(history.admin_key))
        assert admin_without.status_code == 422, path
        admin = await history.client.get(url, params=mine, headers=bearer(history.admin_key))
        assert admin.status_code == 200, path
    nothing = await history.client.get(
        "/api/v1/reports/traffic", params={"group_by": ""}, headers=bearer(history.other_key)
    )
    assert nothing.json()["rows"] == [] and nothing.json()["totals"]["clicks"] == 0


# -- Live Order Tracking ---------------------------------------------------------------------


def order_cells(order: ScriptedOrder, tz: tzinfo) -> list[str]:
    def when(at: datetime | None) -> str:
        return "" if at is None else local_time(at, tz)

    def text(value: str | None) -> str:
        if value is None:
            return ""
        return "'" + value if value[:1] in ("=", "+", "-", "@", "'") else value

    return [
        order.ref,
        when(order.placed),
        when(order.completed),
        order.status,
        str(order.amount),
        "USD",
        str(order.commission),
        order.commission_status,
        text(order.af),
        text(order.cn),
        text(order.cv),
        text(order.dp),
        order.link,
        order.category,
        "true" if order.new_buyer else "false",
        "attributed" if order.attributed else "disqualified",
        "",  # held_rule: no fraud rule is on here
        "",  # review
        "",  # declined_cap_id
        order.credited_rate,
        "plan" if order.credited_rate else "",  # no payout override here
    ]


async def export(history: History, **params: str | list[str]) -> list[list[str]]:
    answer = await history.client.get(
        "/api/v1/reports/orders.csv", params=params, headers=bearer(history.key)
    )
    assert answer.status_code == 200, answer.text
    text = answer.content.decode("utf-8")
    return list(csv.reader(io.StringIO(text)))


async def test_live_order_tracking_lists_every_order_with_its_commission(
    history: History,
) -> None:
    tz = history.settings.period_tz
    first = local_day(min(o.placed for o in history.orders), tz)
    table = await export(history, **{"from": str(first)})
    zone = label(tz)
    assert table[0] == [
        "order_id", f"order_time_{zone}", f"transaction_time_{zone}", "status", "amount",
        "currency", "commission", "commission_status", "af", "cn", "cv", "dp", "link",
        "category", "new_buyer", "attribution", "held_rule", "review", "declined_cap_id",
        "rate", "rate_source",
    ]  # fmt: skip
    ordered = sorted(history.orders, key=lambda o: o.placed)
    assert table[1:] == [order_cells(o, tz) for o in ordered]


async def test_live_order_tracking_filters(history: History) -> None:
    tz = history.settings.period_tz
    first = str(local_day(min(o.placed for o in history.orders), tz))
    orders = history.orders

    def refs(table: list[list[str]]) -> set[str]:
        return {row[0] for row in table[1:]}

    completed = await export(history, **{"from": first, "status": "completed"})
    assert refs(completed) == {o.ref for o in orders if o.status == "completed"}
    either = await export(history, **{"from": first}, status=["refunded", "incomplete"])
    assert refs(either) == {o.ref for o in orders if o.status in ("refunded", "incomplete")}
    tracked = await export(history, **{"from": first, "af": "blog"})
    assert refs(tracked) == {o.ref for o in orders if o.af == "blog"}
    evil = await export(history, **{"from": first, "af": EVIL})
    assert refs(evil) == {o.ref for o in orders if o.af == EVIL}
    # By transaction date: only orders completed in the range, in completion order.
    latest = local_day(max(o.completed for o in orders if o.completed is not None), tz)
    by_transaction = await export(
        history, **{"from": str(latest), "to": str(latest)}, date_type="transaction"
    )
    assert refs(by_transaction) == {
        o.ref for o in orders if o.completed is not None and local_day(o.completed, tz) == latest
    }


async def test_csv_with_a_byte_order_mark_on_request(history: History) -> None:
    answer = await history.client.get(
        "/api/v1/reports/orders.csv", params={"bom": "true"}, headers=bearer(history.key)
    )
    assert answer.content.startswith('\ufeff"order_id",'.encode())
    plain = await history.client.get("/api/v1/reports/orders.csv", headers=bearer(history.key))
    assert plain.content.startswith(b'"order_id",')


# Text columns of the orders export (by position): quoted in the file; the rest bare.
ORDER_TEXT_COLUMNS = {0, 3, 5, 7, 8, 9, 10, 11, 12, 13, 15, 20}


async def test_orders_export_quotes_every_text_cell(history: History) -> None:
    tz = history.settings.period_tz
    first = local_day(min(o.placed for o in history.orders), tz)
    answer = await history.client.get(
        "/api/v1/reports/orders.csv", params={"from": str(first)}, headers=bearer(history.key)
    )
    assert answer.status_code == 200, answer.text
    lines = answer.content.decode("utf-8").split("\r\n")
    zone = label(tz)
    assert lines[0] == (
        f'"order_id","order_time_{zone}","transaction_time_{zone}","status","amount","currency",'
        '"commission","commission_status","af","cn","cv","dp","link","category",'
        '"new_buyer","attribution","held_rule","review","declined_cap_id","rate","rate_source"'
    )
    ordered = sorted(history.orders, key=lambda o: o.placed)
    for order, line in zip(ordered, lines[1:], strict=False):
        sources = [order.af, order.cn, order.cv, order.dp]
        fields = []
        for n, shown in enumerate(order_cells(order, tz)):
            empty = (8 <= n <= 11 and sources[n - 8] is None) or (n >= 16 and not shown)
            quoted = n in ORDER_TEXT_COLUMNS and not empty
            fields.append('"' + shown.replace('"', '""') + '"' if quoted else shown)
        assert line == ",".join(fields)
    assert lines[len(ordered) + 1 :] == [""]
    evil = ',"\'=HYPERLINK(""http://evil.example.org"",""x"")",'
    assert evil in answer.text


# -- income and overview ---------------------------------------------------------------------


async def test_income_by_period(history: History) -> None:
    tz = history.settings.period_tz
    now = datetime.now(UTC)
    current = Period.containing(now, tz)
    p0 = current.previous().previous()
    answer = await history.client.get(
        "/api/v1/reports/income", params={"from": str(p0)}, headers=bearer(history.key)
    )
    assert answer.status_code == 200, answer.text
    periods = answer.json()["periods"]
    assert [p["period"] for p in periods] == [str(p0), str(p0.next()), str(current)]
    for found in periods:
        period = Period.parse(found["period"])
        placed = [
            o for o in history.orders if o.attributed and Period.containing(o.placed, tz) == period
        ]
        assert found["orders"] == len(placed)
        assert D(found["order_amount"]) == sum((o.amount for o in placed), D("0.00"))
        assert found["first_day"] == str(period.start_date)
        assert found["last_day"] == str(period.last_date)
        booked = [
            amount for at, amount in history.ledger if Period.containing(at, tz) == period.next()
        ]
        credited = sum((a for a in booked if a > 0), D("0.00"))
        charged = sum((a for a in booked if a < 0), D("0.00"))
        assert found["closed"] == (period != current)
        if period != current:
            assert (D(found["credited"]), D(found["charged_back"])) == (credited, charged)
            assert D(found["net"]) == credited + charged
            assert found["estimated_commission"] is None
        else:
            estimated = [o for o in history.orders if o.commission_status == "estimated"]
            assert D(found["estimated_commission"]) == sum(o.commission for o in estimated)
            sales = [o for o in history.orders if o.status == "completed" and o.attributed
                     and o.commission_status == "estimated"]  # fmt: skip
            assert D(found["completed_sales"]) == sum(o.amount for o in sales)
    first_close = periods[0]
    assert D(first_close["completed_sales"]) == sum(
        (o.amount for o in history.orders if Period.containing(o.placed, tz) == p0), D("0.00")
    )
    csv_answer = await history.client.get(
        "/api/v1/reports/income.csv", params={"from": str(p0)}, headers=bearer(history.key)
    )
    rows = list(csv.DictReader(io.StringIO(csv_answer.text)))
    assert [r["period"] for r in rows] == [p["period"] for p in periods]
    assert [r["net"] for r in rows] == [p["net"] for p in periods]


async def test_overview_shows_the_glossary_figures(history: History) -> None:
    tz = history.settings.period_tz
    now = datetime.now(UTC)
    today = local_today(tz)
    first = today - timedelta(days=29)
    answer = await history.client.get("/api/v1/reports/overview", headers=bearer(history.key))
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert (found["from"], found["to"]) == (str(first), str(today))

    clicks = [c for c in history.clicks if first <= local_day(ts(c), tz) <= today]
    billable = [c for c in clicks if not c.flags]
    unique = {(local_day(ts(c), tz), c.link_id, c.af, c.cn, c.cv, c.session_id) for c in billable}
    assert found["clicks"] == len(clicks)
    assert found["billable_clicks"] == len(billable)
    assert found["flagged_clicks"] == len(clicks) - len(billable)
    assert found["unique_clicks"] == len(unique)

    placed = [
        o for o in history.orders if o.attributed and first <= local_day(o.placed, tz) <= today
    ]
    completed = [o for o in placed if o.status == "completed"]
    assert found["orders"] == len(placed)
    assert found["completed_orders"] == len(completed)
    total = sum((o.amount for o in placed if o.status not in ("refunded", "invalid")), D(0))
    assert D(found["total_amount"]) == total
    rate_expected = (D(len(completed)) / D(len(billable))).quantize(D("0.000001"), ROUND_HALF_UP)
    assert D(found["conversion_rate"]) == rate_expected

    this_month = Month.containing(now, tz)
    assert found["this_month"] == str(this_month)
    estimated = sum(
        (
            o.commission
            for o in history.orders
            if o.commission_status == "estimated" and Month.containing(o.placed, tz) == this_month
        ),
        D("0.00"),
    )
    assert D(found["this_month_estimated_commission"]) == estimated
    last_month = this_month.previous()
    income = sum(
        (a for at, a in history.ledger if Month.containing(at, tz) == last_month), D("0.00")
    )
    assert D(found["income_last_month"]) == income
    assert D(found["account_balance"]) == sum(a for _, a in history.ledger)
    assert D(found["account_balance"]) == D("8.00")
