"""Payout overrides on real Postgres, through the API: a publisher's (or its network's) own
rates, versioned by period, credited at the close, never recomputing a closed period, and
shown in the reports (docs/commissions.md, "Payout overrides").

The default plan pays 8 % on every category (14 % for new buyers), so an override's rate is
easy to tell apart in every credit below.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.core.db import Pool
from app.money.overrides_store import order_rate
from tests.support.orders import (
    add_click,
    at,
    ensure_default_plan,
    new_link,
    new_merchant,
    order_body,
    signed,
)

D = Decimal


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Shop:
    """The API, an admin key and a merchant reporting orders for any publisher's link."""

    client: httpx.AsyncClient
    pool: Pool
    admin_key: str
    merchant_id: int
    secret: str

    async def publisher(self, kind: str = "publisher", network_id: int | None = None) -> Pub:
        async with self.pool.acquire() as conn:
            publisher_id = await conn.fetchval(
                "INSERT INTO publishers (name, kind, network_id) VALUES ($1, $2, $3) RETURNING id",
                f"Overrides {uuid.uuid4().hex[:8]}",
                kind,
                network_id,
            )
            link = await new_link(conn, publisher_id)
        response = await self.client.post(
            f"/api/v1/publishers/{publisher_id}/api-keys", json={}, headers=self.admin
        )
        return Pub(self, publisher_id, response.json()["key"], link)

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.admin_key)

    async def put(
        self, publisher_id: int, period: str, body: dict[str, Any], key: str | None = None
    ) -> httpx.Response:
        return await self.client.put(
            f"/api/v1/publishers/{publisher_id}/payout-overrides/{period}",
            json=body,
            headers=bearer(key or self.admin_key),
        )


@dataclass
class Pub:
    shop: Shop
    id: int
    key: str
    link: Any

    async def order(
        self, placed: str, amount: str, *, category: str = "home-garden", new_buyer: bool = False
    ) -> str:
        """A completed order (two days after it was placed); its merchant order id."""
        when = at(placed)
        async with self.shop.pool.acquire() as conn:
            click_id = await add_click(conn, self.link, when - timedelta(minutes=3))
        ref = f"OV-{uuid.uuid4().hex[:10]}"
        await self.report(ref, click_id, when, amount, "completed", category, new_buyer)
        return ref

    async def report(
        self,
        ref: str,
        click_id: str,
        when: datetime,
        amount: str,
        status: str,
        category: str = "home-garden",
        new_buyer: bool = False,
    ) -> None:
        body = order_body(
            ref,
            click_id,
            when,
            amount,
            status=status,
            status_time=when + timedelta(days=2),
            category=category,
            new_buyer=new_buyer,
        )
        headers = signed(self.shop.merchant_id, self.shop.secret, body)
        response = await self.shop.client.post("/api/v1/postback", content=body, headers=headers)
        assert response.status_code == 200, response.text

    async def close(self, period: str) -> dict[str, Any]:
        response = await self.shop.client.post(
            f"/api/v1/periods/{period}/close",
            params={"publisher_id": self.id},
            headers=self.shop.admin,
        )
        assert response.status_code == 200, response.text
        closes: list[dict[str, Any]] = response.json()["closed"]
        return {c["period"]: c for c in closes}

    async def credits(self) -> dict[str, dict[str, Any]]:
        """The detail of each credit, by the order amount it was worked out on."""
        async with self.shop.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT amount, detail FROM ledger WHERE publisher_id = $1 AND kind = 'credit'",
                self.id,
            )
        found = {}
        for row in rows:
            detail = json.loads(row["detail"])
            found[detail["order_amount"]] = {**detail, "amount": str(row["amount"])}
        return found


@pytest.fixture
async def shop(app_client: httpx.AsyncClient, pool: Pool, admin_key: str) -> Shop:
    async with pool.acquire() as conn:
        await ensure_default_plan(conn)
        merchant_id, secret = await new_merchant(conn)
    return Shop(app_client, pool, admin_key, merchant_id, secret)


async def test_an_override_pays_from_its_period_on_and_the_plan_before(shop: Shop) -> None:
    pub = await shop.publisher()
    put = await shop.put(pub.id, "2016-10", {"rates": {"home-garden": "11"}})
    assert put.status_code == 201, put.text
    assert put.json()["override"]["effective_from"] == "2016-10-10"
    again = await shop.put(pub.id, "2016-10", {"rates": {"home-garden": "11.00"}})
    assert (again.status_code, again.json()["outcome"]) == (200, "unchanged")
    await pub.order("2016-09-20T10:00:00", "100.00")
    await pub.order("2016-10-20T10:00:00", "200.00")
    await pub.order("2016-10-21T10:00:00", "300.00", category="toys")  # not overridden

    assert (await pub.close("2016-09"))["2016-09"]["credited"] == "8.00"
    october = (await pub.close("2016-10"))["2016-10"]
    assert D(october["credited"]) == D("22.00") + D("24.00")
    credits = await pub.credits()
    assert credits["100.00"]["rate_source"] == "plan"
    assert credits["200.00"] == {
        **credits["200.00"],
        "amount": "22.00",
        "base_rate": "11",
        "rate_source": "override",
        "override_of": pub.id,
        "override_from": "2016-10",
    }
    assert credits["300.00"]["rate_source"] == "plan"
    async with shop.pool.acquire() as conn:
        rate = await order_rate(
            conn, pub.id, "home-garden/tables", False, at("2016-11-01T00:00:00"), tz=UTC
        )
        before = await order_rate(
            conn, pub.id, "home-garden", True, at("2016-10-01T00:00:00"), tz=UTC
        )
    assert (rate, before) == (D(11), D(14))


async def test_later_versions_change_later_periods_only_and_reads_are_scoped(shop: Shop) -> None:
    pub = await shop.publisher()
    other = await shop.publisher()
    assert (await shop.put(pub.id, "2016-10", {"rates": {"*": "11"}})).status_code == 201
    assert (await shop.put(pub.id, "2016-12", {"rates": {"*": "12"}})).status_code == 201
    for placed, amount in (
        ("2016-10-15", "100.00"),
        ("2016-11-15", "200.00"),
        ("2016-12-15", "300.00"),
    ):
        await pub.order(f"{placed}T10:00:00", amount)
    credited = [(await pub.close(p))[p]["credited"] for p in ("2016-10", "2016-11", "2016-12")]
    assert credited == ["11.00", "22.00", "36.00"]

    listed = await shop.client.get(
        f"/api/v1/publishers/{pub.id}/payout-overrides", headers=bearer(pub.key)
    )
    assert [v["effective_period"] for v in listed.json()] == ["2016-10", "2016-12"]
    in_force = await shop.client.get(
        f"/api/v1/publishers/{pub.id}/payout-overrides/2016-11", headers=bearer(pub.key)
    )
    assert in_force.json()["own"]["rates"] == {"*": "11"} and in_force.json()["network"] is None
    # Another publisher's overrides are as good as missing; a publisher key cannot write.
    hidden = await shop.client.get(
        f"/api/v1/publishers/{pub.id}/payout-overrides", headers=bearer(other.key)
    )
    assert hidden.status_code == 404
    refused = await shop.put(pub.id, "2017-01", {"rates": {"*": "20"}}, key=pub.key)
    assert refused.status_code == 403
    gone = await shop.client.delete(
        f"/api/v1/publishers/{pub.id}/payout-overrides/2017-01", headers=bearer(pub.key)
    )
    assert gone.status_code == 403


async def test_closed_periods_are_never_recomputed(shop: Shop) -> None:
    pub = await shop.publisher()
    await pub.order("2016-10-15T10:00:00", "100.00")
    assert (await pub.close("2016-10"))["2016-10"]["credited"] == "8.00"
    late = await shop.put(pub.id, "2016-10", {"rates": {"*": "20"}})
    assert late.status_code == 409
    assert "period 2016-10 is closed" in late.json()["message"]
    assert "use 2016-11 or later" in late.json()["message"]
    earlier = await shop.put(pub.id, "2016-01", {"rates": {"*": "20"}})
    assert earlier.status_code == 409

    # From the next open period on, it applies; a partial refund of an order credited at the
    # override keeps its rate (no adjustment back to the plan's).
    assert (await shop.put(pub.id, "2016-11", {"rates": {"*": "20"}})).status_code == 201
    async with shop.pool.acquire() as conn:
        click_id = await add_click(conn, pub.link, at("2016-11-15T09:00:00"))
    await pub.report(
        "PR-1" + uuid.uuid4().hex[:6], click_id, at("2016-11-15T10:00:00"), "100.00", "completed"
    )
    assert (await pub.close("2016-11"))["2016-11"]["credited"] == "20.00"
    deleted = await shop.client.delete(
        f"/api/v1/publishers/{pub.id}/payout-overrides/2016-11", headers=shop.admin
    )
    assert deleted.status_code == 409
    async with shop.pool.acquire() as conn:
        sums = await conn.fetch(
            "SELECT kind, sum(amount) AS total FROM ledger WHERE publisher_id = $1 GROUP BY kind",
            pub.id,
        )
    assert {r["kind"]: r["total"] for r in sums} == {"credit": D("28.00")}


async def test_partial_refunds_keep_the_override_rate(shop: Shop) -> None:
    pub = await shop.publisher()
    assert (await shop.put(pub.id, "2016-10", {"rates": {"*": "10"}})).status_code == 201
    async with shop.pool.acquire() as conn:
        click_id = await add_click(conn, pub.link, at("2016-10-15T09:00:00"))
    ref = f"PR-{uuid.uuid4().hex[:8]}"
    when = at("2016-10-15T10:00:00")
    await pub.report(ref, click_id, when, "100.00", "completed")
    assert (await pub.close("2016-10"))["2016-10"]["credited"] == "10.00"
    await pub.report(ref, click_id, when, "40.00", "partially_refunded")
    november = (await pub.close("2016-11"))["2016-11"]
    assert (november["charged_back"], november["adjusted"]) == ("-6.00", "0.00")


async def test_a_networks_override_applies_to_members_without_their_own(shop: Shop) -> None:
    network = await shop.publisher("network")
    plain = await shop.publisher(network_id=network.id)
    own = await shop.publisher(network_id=network.id)
    outsider = await shop.publisher()
    body = {"rates": {"toys": "10", "toys/dolls": "12"}, "new_buyer_rates": {"toys": "15"}}
    assert (await shop.put(network.id, "2016-10", body)).status_code == 201
    assert (await shop.put(own.id, "2016-10", {"rates": {"toys": "11"}})).status_code == 201
    for pub in (plain, own, outsider):
        await pub.order("2016-10-15T10:00:00", "100.00", category="toys/cars")
        await pub.order("2016-10-16T10:00:00", "200.00", category="toys/dolls/rag")
        await pub.order("2016-10-17T10:00:00", "300.00", category="toys/cars", new_buyer=True)
        await pub.close("2016-10")
    rates = {}
    for pub in (plain, own, outsider):
        credits = await pub.credits()
        rates[pub.id] = [credits[a]["base_rate"] for a in ("100.00", "200.00", "300.00")]
    assert rates[plain.id] == ["10", "12", "15"]  # the network's
    assert rates[own.id] == ["11", "12", "15"]  # its own toys; the network's more specific dolls
    assert rates[outsider.id] == ["8", "8", "14"]  # the plan's
    assert (await own.credits())["100.00"]["override_of"] == own.id
    assert (await own.credits())["200.00"]["override_of"] == network.id

    # The network's key reads its members' versions; a member sees its network's in force.
    member_list = await shop.client.get(
        f"/api/v1/publishers/{own.id}/payout-overrides", headers=bearer(network.key)
    )
    assert [v["rates"] for v in member_list.json()] == [{"toys": "11"}]
    seen = await shop.client.get(
        f"/api/v1/publishers/{plain.id}/payout-overrides/2016-10", headers=bearer(plain.key)
    )
    assert seen.json()["network"]["rates"] == {"toys": "10", "toys/dolls": "12"}
    # A member has closed 2016-10: the network's version from then cannot change.
    refused = await shop.put(network.id, "2016-10", {"rates": {"toys": "9"}})
    assert refused.status_code == 409 and "for its member" in refused.json()["message"]


@pytest.mark.parametrize(
    ("period", "body", "words"),
    [
        ("2031-10", {"rates": {"Toys!": "9"}}, "is not a category"),
        ("2031-10", {"rates": {"toys": "7"}}, "below the program's minimum of 8 %"),
        ("2031-10", {"rates": {"toys": "99"}}, "more than 100 %"),
        ("2031-10", {"rates": {"toys": "9.00001"}}, "rates.toys"),
        ("2031-10", {"new_buyer_rates": {"computer-office/tablets": "20"}}, "excludes"),
        ("2031-10", {"rates": {"toys": "9"}, "extra": 1}, "extra"),
        ("2031-13", {"rates": {"toys": "9"}}, "period"),
        ("October", {"rates": {"toys": "9"}}, "period"),
    ],
)
async def test_bad_overrides_are_422_in_words(
    shop: Shop, period: str, body: dict[str, Any], words: str
) -> None:
    pub = await shop.publisher()
    response = await shop.put(pub.id, period, body)
    assert response.status_code == 422, response.text
    assert words in response.text


async def test_changes_are_audited_and_reports_show_the_rate(shop: Shop) -> None:
    pub = await shop.publisher()
    assert (await shop.put(pub.id, "2016-10", {"rates": {"*": "9.5"}})).status_code == 201
    assert (await shop.put(pub.id, "2016-11", {"rates": {"*": "10"}})).status_code == 201
    gone = await shop.client.delete(
        f"/api/v1/publishers/{pub.id}/payout-overrides/2016-11", headers=shop.admin
    )
    assert gone.status_code == 204
    async with shop.pool.acquire() as conn:
        actions = await conn.fetch(
            "SELECT action, target_id, after FROM audit_log WHERE publisher_id = $1 ORDER BY id",
            pub.id,
        )
    assert [(a["action"], a["target_id"]) for a in actions if a["action"].startswith("payout")] == [
        ("payout_override.put", f"{pub.id}/2016-10"),
        ("payout_override.put", f"{pub.id}/2016-11"),
        ("payout_override.delete", f"{pub.id}/2016-11"),
    ]

    await pub.order("2016-09-20T10:00:00", "100.00")
    await pub.order("2016-10-20T10:00:00", "200.00")
    await pub.close("2016-09")
    income = await shop.client.get(
        "/api/v1/reports/income",
        params={"from": "2016-09", "to": "2016-10"},
        headers=bearer(pub.key),
    )
    assert income.status_code == 200, income.text
    periods = {p["period"]: p for p in income.json()["periods"]}
    assert periods["2016-09"]["rate_source"] == "plan"
    assert periods["2016-10"]["rate_source"] == "override"
    assert periods["2016-10"]["estimated_commission"] == "19.00"  # 200 x 9.5 %, not closed
    await pub.close("2016-10")
    income = await shop.client.get(
        "/api/v1/reports/income",
        params={"from": "2016-09", "to": "2016-10"},
        headers=bearer(pub.key),
    )
    periods = {p["period"]: p for p in income.json()["periods"]}
    assert (periods["2016-10"]["credited"], periods["2016-10"]["credited_at_override"]) == (
        "19.00",
        "19.00",
    )
    assert periods["2016-09"]["credited_at_override"] == "0.00"
    income_csv = await shop.client.get(
        "/api/v1/reports/income.csv",
        params={"from": "2016-09", "to": "2016-10"},
        headers=bearer(pub.key),
    )
    rows = list(csv.DictReader(io.StringIO(income_csv.text)))
    assert list(rows[0])[-2:] == ["rate_source", "credited_at_override"]
    assert (rows[1]["rate_source"], rows[1]["credited_at_override"]) == ("override", "19.00")

    orders_csv = await shop.client.get(
        "/api/v1/reports/orders.csv",
        params={"from": "2016-09-01", "to": "2016-10-31"},
        headers=bearer(pub.key),
    )
    assert orders_csv.status_code == 200, orders_csv.text
    lines = list(csv.DictReader(io.StringIO(orders_csv.text)))
    assert list(lines[0])[-2:] == ["rate", "rate_source"]
    assert [(r["amount"], r["rate"], r["rate_source"]) for r in lines] == [
        ("100.00", "8", "plan"),
        ("200.00", "9.5", "override"),
    ]
