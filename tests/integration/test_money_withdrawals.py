"""Withdrawals through the API and the CLI, on real Postgres, with the request's clock fixed.

requested → approved → paid (with a payment reference), or requested | approved → rejected
(with a reason; payout and fee given back). Requests only on days 1 to 20 of a month
("on or before the 20th of every month"), and only of what was booked before the current
calendar month ("the Fees accrued in the preceding calendar months", agreement 7.5).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.api.deps import current_time
from app.core.db import Pool
from app.main import create_app
from app.money import ledger
from app.settings import Settings
from tests.integration.test_cli import run_cli
from tests.integration.test_money import Account, bearer
from tests.support.orders import at, ensure_default_plan, new_link, new_merchant, new_publisher

D = Decimal


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@asynccontextmanager
async def clocked_client(settings: Settings, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app, every request judged at ``clock.now``."""
    app = create_app(settings)
    app.api.dependency_overrides[current_time] = clock
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver"
        ) as client,
    ):
        yield client


@dataclass
class Payee(Account):
    clock: Clock | None = None

    async def post(self, path: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=bearer(key or self.admin_key))

    async def step(
        self, withdrawal_id: int, step: str, key: str | None = None, **body: str
    ) -> httpx.Response:
        return await self.post(f"/api/v1/withdrawals/{withdrawal_id}/{step}", body, key)

    async def view(self) -> dict[str, Any]:
        found: dict[str, Any] = await self.get("/api/v1/money/balance")
        return found

    async def credit(self, placed: str, amount: str, period: str) -> None:
        """An order placed (and completed two days later), credited by closing ``period``."""
        await self.order(at(placed), amount)
        await self.close(period)


@pytest.fixture
def clock() -> Clock:
    return Clock(at("2019-05-06T09:00:00"))


async def payee(client: httpx.AsyncClient, pool: Pool, admin_key: str, clock: Clock) -> Payee:
    async with pool.acquire() as conn:
        await ensure_default_plan(conn)
        publisher_id = await new_publisher(conn)
        link = await new_link(conn, publisher_id)
        merchant_id, secret = await new_merchant(conn)
    response = await client.post(
        f"/api/v1/publishers/{publisher_id}/api-keys", json={}, headers=bearer(admin_key)
    )
    key = response.json()["key"]
    return Payee(client, pool, admin_key, publisher_id, key, merchant_id, secret, link, clock)


@pytest.fixture
async def account(
    settings: Settings, pool: Pool, admin_key: str, clock: Clock
) -> AsyncIterator[Payee]:
    async with clocked_client(settings, clock) as client:
        yield await payee(client, pool, admin_key, clock)


async def key_id_of(pool: Pool, key: str) -> int:
    found: int = await pool.fetchval(
        "SELECT id FROM api_keys WHERE key_prefix = $1", key[: len("ctk_") + 6]
    )
    return found


async def test_requested_approved_paid(account: Payee) -> None:
    await account.credit("2019-03-15T10:00:00", "1000.00", "2019-03")  # 80.00, booked 10 April
    view = await account.view()
    assert view["balance"] == view["withdrawable"] == "80.00" and view["can_withdraw"] is True
    assert view["withdrawal"] == {
        "minimum_balance": "16",
        "fee": "15",
        "last_day": 20,
        "next_request_day": "2019-05-06",
        "preceding_months_only": True,
        "payment_days": 30,
    }

    made = await account.withdraw("50.00")
    assert made.status_code == 201, made.text
    w = made.json()
    publisher_key_id = await key_id_of(account.pool, account.key)
    assert w == {
        **w,
        "amount": "50.00",
        "fee": "15.00",
        "payout": "35.00",
        "status": "requested",
        "requested_at": "2019-05-06T09:00:00Z",
        "requested_by": f"key:{publisher_key_id}",
        "payment_due": "2019-06-05",  # about 30 days after the instruction (agreement 7.6)
        "approved_at": None,
        "paid_at": None,
        "rejected_at": None,
    }
    assert await account.balance() == D("30.00")

    mine = await account.step(w["id"], "approve", key=account.key)
    assert mine.status_code == 403
    admin_key_id = await key_id_of(account.pool, account.admin_key)
    assert account.clock is not None
    account.clock.now = at("2019-05-07T10:00:00")
    approved = await account.step(w["id"], "approve")
    assert approved.status_code == 200, approved.text
    assert approved.json() == {
        **approved.json(),
        "status": "approved",
        "approved_at": "2019-05-07T10:00:00Z",
        "approved_by": f"key:{admin_key_id}",
    }
    again = await account.step(w["id"], "approve")
    assert again.status_code == 409
    assert again.json()["message"] == f"withdrawal {w['id']} is already approved"

    assert (await account.step(w["id"], "pay")).status_code == 422  # no reference
    blank = await account.step(w["id"], "pay", reference="   ")
    assert blank.status_code == 422 and blank.json()["message"] == "reference: must not be empty"
    account.clock.now = at("2019-06-04T08:00:00")
    paid = await account.step(w["id"], "pay", reference="TRX-2019-0001")
    assert paid.status_code == 200, paid.text
    assert paid.json() == {
        **paid.json(),
        "status": "paid",
        "paid_at": "2019-06-04T08:00:00Z",
        "paid_by": f"key:{admin_key_id}",
        "payment_reference": "TRX-2019-0001",
    }
    for step, body in (("pay", {"reference": "TRX-2"}), ("reject", {"reason": "x"})):
        final = await account.step(w["id"], step, **body)
        assert final.status_code == 409 and final.json()["error"] == "conflict"
    final = await account.step(w["id"], "reject", reason="late")
    assert final.json()["message"] == (
        f"withdrawal {w['id']} is paid: only a withdrawal that is approved or requested can "
        "be rejected (it has been paid, which is final)"
    )
    # Paying moves no money: it left the balance when it was requested.
    assert await account.balance() == D("30.00") == await account.ledger_sum()
    listed = (await account.get("/api/v1/money/withdrawals"))["items"]
    assert [(x["status"], x["payment_reference"]) for x in listed] == [("paid", "TRX-2019-0001")]
    got = await account.client.get(
        f"/api/v1/withdrawals/{w['id']}", headers=bearer(account.admin_key)
    )
    assert got.json() == paid.json()
    for path in (f"/api/v1/withdrawals/{w['id']}", "/api/v1/withdrawals"):
        assert (await account.client.get(path, headers=bearer(account.key))).status_code == 403
    missing = await account.step(2**62, "approve")
    assert missing.status_code == 404 and "does not exist" in missing.json()["message"]
    assert (await account.step(0, "approve")).status_code == 422


async def test_a_request_without_a_body_takes_the_whole_balance(account: Payee) -> None:
    await account.credit("2019-03-15T10:00:00", "1000.00", "2019-03")  # 80.00
    for headers in ({}, {"content-type": "application/json"}):
        made = await account.client.post(
            "/api/v1/money/withdrawals", headers={**bearer(account.key), **headers}
        )
        assert made.status_code == 201, made.text
        assert made.json()["amount"] == "80.00" and made.json()["payout"] == "65.00"
        await account.step(made.json()["id"], "reject", reason="asked twice")


async def test_rejecting_gives_payout_and_fee_back(account: Payee) -> None:
    await account.credit("2019-03-15T10:00:00", "1000.00", "2019-03")  # 80.00
    first = (await account.withdraw("40.00")).json()
    assert await account.balance() == D("40.00")
    early = await account.step(first["id"], "pay", reference="TRX")
    assert early.status_code == 409
    assert early.json()["message"].endswith("can be paid (approve it first)")
    assert (await account.step(first["id"], "reject")).status_code == 422  # no reason
    rejected = await account.step(first["id"], "reject", reason="bank details missing")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["reject_reason"] == "bank details missing"
    assert await account.balance() == D("80.00") == await account.ledger_sum()
    entries = (await account.get("/api/v1/money/ledger"))["items"]
    assert [(e["kind"], e["amount"], e["withdrawal_id"]) for e in entries[-4:]] == [
        ("withdrawal", "-25.00", first["id"]),
        ("fee", "-15.00", first["id"]),
        ("withdrawal_reversal", "25.00", first["id"]),
        ("fee_reversal", "15.00", first["id"]),
    ]
    assert entries[-1]["detail"]["reason"] == "bank details missing"
    for step, body in (("approve", {}), ("pay", {"reference": "T"}), ("reject", {"reason": "r"})):
        assert (await account.step(first["id"], step, **body)).status_code == 409
    # The money given back can be withdrawn again at once; rejected after approval too.
    assert (await account.view())["withdrawable"] == "80.00"
    second = (await account.withdraw()).json()
    assert second["amount"] == "80.00" and await account.balance() == D("0.00")
    assert (await account.step(second["id"], "approve")).status_code == 200
    undone = await account.step(second["id"], "reject", reason="  account closed  ")
    assert undone.json()["reject_reason"] == "account closed"
    assert await account.balance() == D("80.00") == await account.ledger_sum()
    pending = await account.client.get(
        "/api/v1/withdrawals",
        params={"status": ["requested", "approved"], "publisher_id": account.publisher_id},
        headers=bearer(account.admin_key),
    )
    assert pending.json()["items"] == []
    everything = await account.client.get(
        "/api/v1/withdrawals",
        params={"publisher_id": account.publisher_id},
        headers=bearer(account.admin_key),
    )
    assert [x["status"] for x in everything.json()["items"]] == ["rejected", "rejected"]
    bad = await account.client.get(
        "/api/v1/withdrawals", params={"status": "lost"}, headers=bearer(account.admin_key)
    )
    assert bad.status_code == 422


async def test_racing_steps_take_one_path(account: Payee) -> None:
    await account.credit("2019-03-15T10:00:00", "1000.00", "2019-03")  # 80.00
    made = (await account.withdraw("80.00")).json()
    rejects = await asyncio.gather(
        *(account.step(made["id"], "reject", reason=f"r{n}") for n in range(6))
    )
    assert sorted(r.status_code for r in rejects) == [200] + [409] * 5
    assert await account.balance() == D("80.00") == await account.ledger_sum()

    made = (await account.withdraw("80.00")).json()
    mixed = await asyncio.gather(
        account.step(made["id"], "approve"),
        account.step(made["id"], "reject", reason="race"),
        account.step(made["id"], "approve"),
        account.step(made["id"], "reject", reason="race"),
    )
    # The first reject wins, from requested or approved; an approve succeeds only before it.
    codes = [r.status_code for r in mixed]
    assert codes[1::2].count(200) == 1 and codes[0::2].count(200) in (0, 1)
    final = (await account.get("/api/v1/money/withdrawals"))["items"][-1]
    assert final["status"] == "rejected"
    assert await account.balance() == D("80.00") == await account.ledger_sum()


async def test_requests_on_days_1_to_20_only(account: Payee) -> None:
    assert account.clock is not None
    await account.credit("2019-03-15T10:00:00", "1000.00", "2019-03")  # 80.00
    account.clock.now = at("2019-05-20T23:59:59")
    assert (await account.withdraw("20.00")).status_code == 201
    account.clock.now = at("2019-05-21T00:00:00")
    late = await account.withdraw("20.00")
    assert late.status_code == 409
    assert late.json()["message"] == (
        "withdrawals can be requested on days 1 to 20 of a month (UTC); today is 21 May 2019, "
        "the next day one can be requested is 1 June 2019"
    )
    view = await account.view()
    assert view["can_withdraw"] is False and view["withdrawal"]["next_request_day"] == "2019-06-01"
    assert view["withdrawable"] == "60.00"
    account.clock.now = at("2019-12-31T12:00:00")
    december = await account.withdraw("20.00")
    assert "the next day one can be requested is 1 January 2020" in december.json()["message"]
    account.clock.now = at("2020-01-01T00:00:00")
    assert (await account.withdraw("20.00")).status_code == 201
    assert await account.balance() == D("40.00")


async def test_the_day_is_judged_in_the_period_time_zone_and_configurable(
    settings: Settings, pool: Pool, admin_key: str
) -> None:
    shanghai = settings.model_copy(update={"period_timezone": "Asia/Shanghai"})
    clock = Clock(at("2019-05-20T15:59:00"))  # 23:59 on 20 May in Shanghai
    async with clocked_client(shanghai, clock) as client:
        account = await payee(client, pool, admin_key, clock)
        await account.credit("2019-03-15T10:00:00", "1000.00", "2019-03")
        assert (await account.withdraw("20.00")).status_code == 201
        clock.now = at("2019-05-20T16:00:00")  # 00:00 on 21 May in Shanghai
        refused = await account.withdraw("20.00")
        assert refused.status_code == 409
        assert "(Asia/Shanghai); today is 21 May 2019" in refused.json()["message"]
    later = settings.model_copy(update={"withdrawal_last_day": 25})
    clock.now = at("2019-05-25T12:00:00")
    async with clocked_client(later, clock) as client:
        account.client = client
        assert (await account.withdraw("20.00")).status_code == 201
        clock.now = at("2019-05-26T12:00:00")
        assert "days 1 to 25" in (await account.withdraw("20.00")).json()["message"]


async def test_only_what_was_booked_before_this_month(account: Payee) -> None:
    assert account.clock is not None
    await account.credit("2019-03-15T10:00:00", "1000.00", "2019-03")  # 80.00, 10 April
    await account.credit("2019-04-15T10:00:00", "500.00", "2019-04")  # 40.00, 10 May
    account.clock.now = at("2019-05-15T10:00:00")
    view = await account.view()
    assert (view["balance"], view["withdrawable"]) == ("120.00", "80.00")
    too_much = await account.withdraw("80.01")
    assert too_much.status_code == 409
    assert too_much.json()["message"] == (
        "amount 80.01 is more than the withdrawable balance (80.00; money booked since "
        "1 May 2019 becomes withdrawable on 1 June 2019)"
    )
    everything = await account.withdraw()  # default: all that is withdrawable
    assert everything.json()["amount"] == "80.00"
    view = await account.view()
    assert (view["balance"], view["withdrawable"], view["can_withdraw"]) == (
        "40.00",
        "0.00",
        False,
    )
    nothing = await account.withdraw()
    assert nothing.status_code == 409
    assert nothing.json()["message"] == (
        "the withdrawable balance (0.00 of a balance of 40.00; money booked since 1 May 2019 "
        "becomes withdrawable on 1 June 2019) must be above 16 to withdraw"
    )
    account.clock.now = at("2019-06-03T10:00:00")
    view = await account.view()
    assert (view["balance"], view["withdrawable"], view["can_withdraw"]) == (
        "40.00",
        "40.00",
        True,
    )


async def test_a_chargeback_this_month_comes_off_older_money(account: Payee) -> None:
    assert account.clock is not None
    old = await account.order(at("2019-03-15T10:00:00"), "1000.00")  # 80.00, 10 April
    await account.close("2019-03")
    click_id = (await account.get("/api/v1/orders"))["items"][0]["click_id"]
    await account.report(old, click_id, at("2019-03-15T10:00:00"), "1000.00", "refunded")
    await account.credit("2019-04-15T10:00:00", "500.00", "2019-04")  # +40.00, -80.00: 10 May
    account.clock.now = at("2019-05-15T10:00:00")
    view = await account.view()
    assert (view["balance"], view["withdrawable"]) == ("40.00", "0.00")


async def test_preceding_months_rule_can_be_turned_off(
    settings: Settings, pool: Pool, admin_key: str
) -> None:
    anytime = settings.model_copy(update={"withdrawal_preceding_months_only": False})
    clock = Clock(at("2019-05-15T10:00:00"))
    async with clocked_client(anytime, clock) as client:
        account = await payee(client, pool, admin_key, clock)
        await account.credit("2019-04-15T10:00:00", "500.00", "2019-04")  # 40.00, 10 May
        view = await account.view()
        assert (view["balance"], view["withdrawable"]) == ("40.00", "40.00")
        assert view["withdrawal"]["preceding_months_only"] is False
        assert (await account.withdraw()).json()["amount"] == "40.00"


async def test_the_ledger_refuses_wrong_signs(account: Payee) -> None:
    await account.credit("2019-03-15T10:00:00", "1000.00", "2019-03")
    made = (await account.withdraw("40.00")).json()
    async with account.pool.acquire() as conn:
        for kind, amount in (("withdrawal_reversal", "-1.00"), ("fee_reversal", "-1.00")):
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(
                    """INSERT INTO ledger (publisher_id, kind, amount, withdrawal_id, effective_at)
                       VALUES ($1, $2, $3, $4, now())""",
                    account.publisher_id,
                    kind,
                    D(amount),
                    made["id"],
                )
        with pytest.raises(asyncpg.CheckViolationError):  # paid, without a reference
            await conn.execute(
                """UPDATE withdrawals SET status = 'paid', approved_at = now(), approved_by = 'x',
                       paid_at = now(), paid_by = 'x' WHERE id = $1""",
                made["id"],
            )
        assert await ledger.balance(conn, account.publisher_id) == D("40.00")


async def test_cli_lists_approves_pays_and_rejects(account: Payee, database_url: str) -> None:
    await account.credit("2019-03-15T10:00:00", "1000.00", "2019-03")  # 80.00
    first = (await account.withdraw("30.00")).json()
    second = (await account.withdraw("20.00")).json()
    mine = ["--publisher-id", str(account.publisher_id)]

    listed = run_cli(database_url, "list-withdrawals", *mine)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith(f"withdrawal {first['id']}: requested, publisher ")
    assert "30.00 (payout 15.00 + fee 15.00), requested 2019-05-06 09:00" in lines[0]
    assert "due 2019-06-05" in lines[0]
    assert lines[-1] == "2 withdrawals (requested or approved); times in UTC"

    early = run_cli(database_url, "pay-withdrawal", str(first["id"]), "--reference", "TR-1")
    assert early.returncode == 1
    assert early.stderr.strip() == (
        f"error: withdrawal {first['id']} is requested: only a withdrawal that is approved can "
        "be paid (approve it first)"
    )
    approved = run_cli(database_url, "approve-withdrawal", str(first["id"]))
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == (
        f"withdrawal {first['id']} approved: pay 15.00 to publisher {account.publisher_id} "
        "by 2019-06-05"
    )
    no_reference = run_cli(database_url, "pay-withdrawal", str(first["id"]))
    assert no_reference.returncode == 2 and "--reference" in no_reference.stderr
    blank = run_cli(database_url, "pay-withdrawal", str(first["id"]), "--reference", " ")
    assert blank.returncode == 1 and blank.stderr.strip() == "error: reference: must not be empty"
    paid = run_cli(database_url, "pay-withdrawal", str(first["id"]), "--reference", "TR-1")
    assert paid.returncode == 0, paid.stderr
    assert "paid: 15.00 to publisher" in paid.stdout and "reference TR-1" in paid.stdout
    too_late = run_cli(database_url, "reject-withdrawal", str(first["id"]), "--reason", "x")
    assert too_late.returncode == 1 and "which is final" in too_late.stderr

    rejected = run_cli(
        database_url, "reject-withdrawal", str(second["id"]), "--reason", "duplicate request"
    )
    assert rejected.returncode == 0, rejected.stderr
    assert "20.00 (payout 5.00 + fee 15.00) given back" in rejected.stdout
    assert await account.balance() == D("50.00") == await account.ledger_sum()
    row = await account.pool.fetchrow(
        "SELECT approved_by, paid_by, payment_reference FROM withdrawals WHERE id = $1",
        first["id"],
    )
    assert row is not None
    assert dict(row) == {"approved_by": "cli", "paid_by": "cli", "payment_reference": "TR-1"}

    left = run_cli(database_url, "list-withdrawals", *mine)
    assert left.stdout.strip() == "0 withdrawals (requested or approved); times in UTC"
    every = run_cli(database_url, "list-withdrawals", *mine, "--status", "paid")
    assert "paid by cli (reference TR-1)" in every.stdout
    for args, message in (
        (["approve-withdrawal", "999999999"], "withdrawal 999999999 does not exist"),
        (["approve-withdrawal", "abc"], "not a whole number"),
        (["list-withdrawals", "--status", "lost"], "invalid choice"),
        (["reject-withdrawal", str(second["id"])], "--reason"),
    ):
        result = run_cli(database_url, *args)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
