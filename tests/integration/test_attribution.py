"""Attribution's rules through signed postbacks and the API, on real Postgres: an order is
tied to its click only when placed after it (less the clock tolerance) and within the
attribution window, and only when the reporting merchant owns the host of the click's link.
Orders failing a rule are kept, unattributed, with the reason, and no retry (the next
postback, POST /orders/reattribute, a period close) ever attributes them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.accounts import merchants
from app.core.db import Pool
from app.links import model as link_model
from app.links import store as link_store
from app.main import create_app
from app.settings import Settings
from tests.integration.test_cli import run_cli
from tests.support.orders import (
    add_click,
    at,
    ensure_default_plan,
    new_merchant,
    new_publisher,
    order_body,
    signed,
    uuid7_at,
)

NOW = datetime.now(UTC).replace(microsecond=0)
SHOP_URL = "https://shop.example.com/item/1"
OTHER_URL = "https://outlet.example.net/deal/9"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Merchant:
    id: int
    secret: str

    async def post(self, client: httpx.AsyncClient, body: bytes) -> dict[str, Any]:
        answer = await client.post(
            "/api/v1/postback", content=body, headers=signed(self.id, self.secret, body)
        )
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


@dataclass
class Program:
    """A publisher with a link to shop.example.com and one to outlet.example.net, and the
    shop: a merchant owning shop.example.com."""

    client: httpx.AsyncClient
    pool: Pool
    admin_key: str
    publisher_id: int
    key: str
    shop_link: link_model.Link
    other_link: link_model.Link
    shop: Merchant

    async def merchant(self, *hosts: str) -> Merchant:
        async with self.pool.acquire() as conn:
            found, secret = await merchants.create_merchant(
                conn, f"Shop {uuid.uuid4().hex[:10]}", hosts
            )
        return Merchant(found.id, secret)

    async def click(self, when: datetime, link: link_model.Link | None = None) -> str:
        async with self.pool.acquire() as conn:
            return await add_click(conn, link or self.shop_link, when)

    async def order(self, ref: str, merchant: Merchant | None = None) -> dict[str, Any]:
        """The order as the admin's API shows it."""
        found = merchant or self.shop
        order_id = await self.pool.fetchval(
            "SELECT id FROM orders WHERE merchant_id = $1 AND order_ref = $2", found.id, ref
        )
        answer = await self.client.get(f"/api/v1/orders/{order_id}", headers=bearer(self.admin_key))
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def publisher_sees(self, ref: str) -> bool:
        answer = await self.client.get("/api/v1/orders", headers=bearer(self.key))
        assert answer.status_code == 200, answer.text
        return any(o["order_id"] == ref for o in answer.json()["items"])

    async def reattribute(self) -> int:
        answer = await self.client.post(
            "/api/v1/orders/reattribute", headers=bearer(self.admin_key)
        )
        assert answer.status_code == 200, answer.text
        attributed: int = answer.json()["attributed"]
        return attributed


@pytest.fixture
async def program(app_client: httpx.AsyncClient, pool: Pool, admin_key: str) -> Program:
    async with pool.acquire() as conn:
        await ensure_default_plan(conn)
        publisher_id = await new_publisher(conn, "Attribution test")
        shop_link = await link_store.create_link(conn, publisher_id, SHOP_URL)
        other_link = await link_store.create_link(conn, publisher_id, OTHER_URL)
        shop, secret = await merchants.create_merchant(
            conn, f"Shop {uuid.uuid4().hex[:10]}", ["shop.example.com"]
        )
    answer = await app_client.post(
        f"/api/v1/publishers/{publisher_id}/api-keys", json={}, headers=bearer(admin_key)
    )
    key = answer.json()["key"]
    return Program(
        app_client,
        pool,
        admin_key,
        publisher_id,
        key,
        shop_link,
        other_link,
        Merchant(shop.id, secret),
    )


@asynccontextmanager
async def client_with(settings: Settings, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app again, with other settings."""
    app = create_app(settings.model_copy(update=changes))
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver"
        ) as client,
    ):
        yield client


def ref() -> str:
    return f"A-{uuid.uuid4().hex[:12]}"


# -- time: after the click, within the window ------------------------------------------------


async def test_an_order_from_2016_on_todays_click_is_never_attributed(program: Program) -> None:
    click_id = await program.click(NOW)
    placed = at("2016-09-20T10:00:00")
    order = ref()
    body = order_body(
        order,
        click_id,
        placed,
        "400.00",
        status="completed",
        status_time=placed + timedelta(days=2),
    )
    answer = await program.shop.post(program.client, body)
    assert answer == {**answer, "outcome": "created", "attribution": "unattributed"}
    shown = await program.order(order)
    assert shown["unattributed_reason"] == "order_before_click"
    assert (shown["publisher_id"], shown["code"], shown["qualifies"]) == (None, None, False)
    assert not await program.publisher_sees(order)

    # No retry attributes it: the same postback, a retry, a close of its period.
    again = await program.shop.post(program.client, body)
    assert again == {**again, "outcome": "unchanged", "attribution": "unattributed"}
    await program.reattribute()
    close = await program.client.post(
        "/api/v1/periods/2016-09/close",
        params={"publisher_id": program.publisher_id},
        headers=bearer(program.admin_key),
    )
    assert close.status_code == 200, close.text
    closed = close.json()["closed"]
    assert [(c["period"], c["orders_credited"], c["credited"]) for c in closed] == [
        ("2016-09", 0, "0.00")
    ]
    assert (await program.order(order))["unattributed_reason"] == "order_before_click"
    balance = await program.client.get("/api/v1/money/balance", headers=bearer(program.key))
    assert balance.json()["balance"] == "0.00"


@pytest.mark.parametrize(
    ("after_click", "attribution", "reason"),
    [
        (timedelta(minutes=-4, seconds=-59), "attributed", None),  # merchant's clock behind
        (timedelta(minutes=-5, seconds=-1), "unattributed", "order_before_click"),
        (timedelta(days=-1), "unattributed", "order_before_click"),
        (timedelta(0), "attributed", None),
        (timedelta(days=29, hours=23), "attributed", None),
        (timedelta(days=30, seconds=1), "unattributed", "outside_attribution_window"),
        (timedelta(days=39), "unattributed", "outside_attribution_window"),
    ],
)
async def test_the_order_time_against_the_click_time(
    program: Program, after_click: timedelta, attribution: str, reason: str | None
) -> None:
    clicked = NOW - timedelta(days=40)
    click_id = await program.click(clicked)
    order = ref()
    answer = await program.shop.post(
        program.client, order_body(order, click_id, clicked + after_click, "20.00")
    )
    assert answer["attribution"] == attribution
    shown = await program.order(order)
    assert shown["unattributed_reason"] == reason
    assert shown["publisher_id"] == (program.publisher_id if reason is None else None)
    assert await program.publisher_sees(order) is (reason is None)


async def test_an_order_waiting_for_its_click_says_so(program: Program) -> None:
    waiting, hopeless = ref(), ref()
    click_id = str(uuid7_at(NOW - timedelta(minutes=1)))
    await program.shop.post(program.client, order_body(waiting, click_id, NOW, "1.00"))
    await program.shop.post(program.client, order_body(hopeless, "not-a-click", NOW, "1.00"))
    assert (await program.order(waiting))["unattributed_reason"] == "click_not_found"
    assert (await program.order(hopeless))["unattributed_reason"] == "not_a_click_id"
    listed = await program.client.get(
        "/api/v1/orders", params={"attribution": "unattributed"}, headers=bearer(program.admin_key)
    )
    assert listed.status_code == 200
    assert all(o["unattributed_reason"] is not None for o in listed.json()["items"])


async def test_the_window_and_the_tolerance_are_settings(
    program: Program, settings: Settings
) -> None:
    clicked = NOW - timedelta(days=3)
    click_id = await program.click(clicked)
    cases = {
        timedelta(hours=23): None,
        timedelta(days=1, seconds=1): "outside_attribution_window",
        timedelta(seconds=-1): "order_before_click",  # no tolerance at all
    }
    async with client_with(
        settings, attribution_window_days=1, attribution_clock_skew_s=0
    ) as client:
        for after_click, reason in cases.items():
            order = ref()
            await program.shop.post(
                client, order_body(order, click_id, clicked + after_click, "5.00")
            )
            assert (await program.order(order))["unattributed_reason"] == reason


async def test_a_click_arriving_after_a_later_postback_is_judged_the_same(
    program: Program,
) -> None:
    """The click reaches Postgres after the order: the order waits (click_not_found), then
    is judged when the click arrives, whichever retry finds it."""
    clicked = NOW - timedelta(hours=1)
    early, on_time = uuid7_at(clicked), uuid7_at(clicked)
    before, after = ref(), ref()
    for order, click_id, placed in (
        (before, early, clicked - timedelta(days=1)),
        (after, on_time, clicked + timedelta(minutes=5)),
    ):
        answer = await program.shop.post(
            program.client, order_body(order, str(click_id), placed, "9.00")
        )
        assert answer["attribution"] == "unattributed"
        assert (await program.order(order))["unattributed_reason"] == "click_not_found"
    await program.reattribute()  # nothing of this test's yet; settles what others left
    async with program.pool.acquire() as conn:
        await add_click(conn, program.shop_link, clicked, click_id=early)
        await add_click(conn, program.shop_link, clicked, click_id=on_time)

    assert await program.reattribute() == 1  # the order placed after its click only
    assert (await program.order(before))["unattributed_reason"] == "order_before_click"
    assert (await program.order(after))["attribution"] == "attributed"
    # Refused for good: a later status, another retry change nothing.
    completed = order_body(
        before, str(early), clicked - timedelta(days=1), "9.00", status="completed", status_time=NOW
    )
    answer = await program.shop.post(program.client, completed)
    assert answer == {**answer, "outcome": "updated", "attribution": "unattributed"}
    assert await program.reattribute() == 0
    shown = await program.order(before)
    assert (shown["attribution"], shown["unattributed_reason"]) == (
        "unattributed",
        "order_before_click",
    )


async def test_an_order_keeps_the_window_in_force_when_it_was_reported(
    program: Program, settings: Settings
) -> None:
    """Reported under a one-day window while its click was not stored yet; the retry runs
    under the default thirty days and still judges it by one."""
    clicked = NOW - timedelta(days=5)
    click_id = uuid7_at(clicked)
    order = ref()
    async with client_with(settings, attribution_window_days=1) as client:
        body = order_body(order, str(click_id), clicked + timedelta(days=2), "7.00")
        assert (await program.shop.post(client, body))["attribution"] == "unattributed"
    async with program.pool.acquire() as conn:
        await add_click(conn, program.shop_link, clicked, click_id=click_id)
    await program.reattribute()
    assert (await program.order(order))["unattributed_reason"] == "outside_attribution_window"


# -- the merchant's hosts --------------------------------------------------------------------


async def test_a_merchant_attributes_only_to_clicks_on_links_to_its_hosts(
    program: Program,
) -> None:
    outlet = await program.merchant("*.example.net")
    shop_click = await program.click(NOW - timedelta(minutes=10))
    outlet_click = await program.click(NOW - timedelta(minutes=10), program.other_link)
    placed = NOW - timedelta(minutes=5)
    expected = [
        (program.shop, shop_click, None),
        (outlet, shop_click, "click_not_for_this_merchant"),
        (outlet, outlet_click, None),
        (program.shop, outlet_click, "click_not_for_this_merchant"),
    ]
    for merchant, click_id, reason in expected:
        order = ref()
        answer = await merchant.post(program.client, order_body(order, click_id, placed, "30.00"))
        assert answer["attribution"] == ("attributed" if reason is None else "unattributed")
        shown = await program.order(order, merchant)
        assert shown["unattributed_reason"] == reason
        assert await program.publisher_sees(order) is (reason is None)


@pytest.mark.parametrize(
    ("hosts", "destination", "attributed"),
    [
        (("*.example.com",), SHOP_URL, True),
        (("example.com",), SHOP_URL, False),  # a host is not its subdomains
        (("*.shop.example.com",), SHOP_URL, False),  # nor a wildcard its own name
        (("other.example.org", "SHOP.Example.com."), SHOP_URL, True),
        (("bücher.example.com",), "https://xn--bcher-kva.example.com/b", True),
        (("*.xn--bcher-kva.example",), "https://www.bücher.example/b", True),  # an old row
        (("shop.example.com",), "https://shop.example.com:8443/x", True),
        (("2001:db8::1",), "http://[2001:db8::1]:8080/x", True),
        ((), OTHER_URL, True),  # no hosts: any link, as before merchants had hosts
    ],
)
async def test_hosts_are_compared_in_one_form(
    program: Program, hosts: tuple[str, ...], destination: str, attributed: bool
) -> None:
    async with program.pool.acquire() as conn:
        link = await link_store.create_link(conn, program.publisher_id, destination)
    merchant = await program.merchant(*hosts)
    click_id = await program.click(NOW - timedelta(minutes=1), link)
    order = ref()
    answer = await merchant.post(program.client, order_body(order, click_id, NOW, "1.00"))
    assert answer["attribution"] == ("attributed" if attributed else "unattributed")
    reason = None if attributed else "click_not_for_this_merchant"
    assert (await program.order(order, merchant))["unattributed_reason"] == reason


async def test_the_retry_checks_the_merchant_too(program: Program) -> None:
    outlet = await program.merchant("outlet.example.net")
    clicked = NOW - timedelta(minutes=30)
    click_id = uuid7_at(clicked)
    order = ref()
    body = order_body(order, str(click_id), clicked + timedelta(minutes=1), "12.00")
    assert (await outlet.post(program.client, body))["attribution"] == "unattributed"
    await program.reattribute()
    async with program.pool.acquire() as conn:
        await add_click(conn, program.shop_link, clicked, click_id=click_id)
    assert await program.reattribute() == 0
    shown = await program.order(order, outlet)
    assert shown["unattributed_reason"] == "click_not_for_this_merchant"
    assert shown["publisher_id"] is None


async def test_hosts_set_from_the_cli_apply_to_the_next_postbacks(
    program: Program, database_url: str
) -> None:
    name = f"CLI shop {uuid.uuid4().hex[:8]}"
    created = run_cli(database_url, "create-merchant", name)
    assert created.returncode == 0, created.stderr
    assert "hosts: any host (no hosts set)" in created.stdout
    assert "warning:" in created.stderr and "set-merchant-hosts" in created.stderr
    merchant = Merchant(int(created.stdout.split()[1]), created.stdout.strip().splitlines()[-1])
    click_id = await program.click(NOW - timedelta(minutes=2), program.other_link)
    legacy = ref()
    body = order_body(legacy, click_id, NOW, "3.00")
    assert (await merchant.post(program.client, body))["attribution"] == "attributed"

    changed = run_cli(
        database_url, "set-merchant-hosts", name, "Shop.Example.com", "*.Bücher.example"
    )
    assert changed.returncode == 0, changed.stderr
    assert "hosts: shop.example.com, *.xn--bcher-kva.example" in changed.stdout
    assert changed.stderr == ""
    listed = run_cli(database_url, "list-merchants")
    assert f"{name}; hosts: shop.example.com, *.xn--bcher-kva.example" in listed.stdout
    refused = ref()
    body = order_body(refused, click_id, NOW, "3.00")
    assert (await merchant.post(program.client, body))["attribution"] == "unattributed"
    assert (await program.order(refused, merchant))["unattributed_reason"] == (
        "click_not_for_this_merchant"
    )
    # Orders decided before the change stay as they were.
    assert (await program.order(legacy, merchant))["attribution"] == "attributed"

    cleared = run_cli(database_url, "set-merchant-hosts", name, "--any-host")
    assert cleared.returncode == 0 and "any host (no hosts set)" in cleared.stdout
    assert "warning:" in cleared.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set-merchant-hosts", "{name}"], "name the hosts"),
        (["set-merchant-hosts", "{name}", "a.example.com", "--any-host"], "name the hosts"),
        (["set-merchant-hosts", "{name}", "https://a.example.com/"], "without a scheme"),
        (["set-merchant-hosts", "{name}", "a.*.example.com"], "may only open it"),
        (["set-merchant-hosts", "{name}", "a..example.com"], "empty label"),
        (["set-merchant-hosts", "No such shop", "a.example.com"], "no merchant named"),
        (["create-merchant", "{name} 2", "--host", "*.192.0.2.1"], "needs a domain name"),
    ],
)
async def test_bad_hosts_get_a_message_and_change_nothing(
    database_url: str, pool: Pool, args: list[str], message: str
) -> None:
    async with pool.acquire() as conn:
        merchant, _ = await merchants.create_merchant(
            conn, f"Hosts {uuid.uuid4().hex[:8]}", ["shop.example.com"]
        )
    result = run_cli(database_url, *[a.format(name=merchant.name) for a in args])
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    hosts = await pool.fetchval("SELECT hosts FROM merchants WHERE id = $1", merchant.id)
    assert hosts == ["shop.example.com"]
    assert (
        await pool.fetchval("SELECT count(*) FROM merchants WHERE name = $1", f"{merchant.name} 2")
        == 0
    )


async def test_a_merchant_made_before_hosts_existed_keeps_attributing(
    program: Program,
) -> None:
    """Upgrading adds no hosts: such a merchant attributes as it did, to any link."""
    async with program.pool.acquire() as conn:
        merchant_id, secret = await new_merchant(conn)
    assert (
        await program.pool.fetchval("SELECT hosts FROM merchants WHERE id = $1", merchant_id) == []
    )
    click_id = await program.click(NOW - timedelta(minutes=1), program.other_link)
    order = ref()
    body = order_body(order, click_id, NOW, "2.00")
    answer = await Merchant(merchant_id, secret).post(program.client, body)
    assert answer["attribution"] == "attributed"
