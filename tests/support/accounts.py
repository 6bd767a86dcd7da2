"""A publisher's money driven through the API: orders reported by signed postback, periods
closed by an admin, balances and ledgers read back. For the money tests on real Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from app.core.db import Pool
from app.main import create_app
from app.settings import Settings
from tests.support.orders import (
    add_click,
    ensure_default_plan,
    new_link,
    new_merchant,
    new_publisher,
    order_body,
    signed,
)

D = Decimal
SHANGHAI = "Asia/Shanghai"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def app_on(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app in-process under ``settings``, behind an httpx client."""
    app = create_app(settings)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver"
        ) as client,
    ):
        yield client


@dataclass
class Order:
    """An order as the merchant knows it: enough to report any status of it again."""

    ref: str
    click_id: str
    placed: datetime
    amount: str
    new_buyer: bool = False
    category: str = "home-garden"


@dataclass
class Account:
    """A fresh publisher with its key, a link and a merchant that reports its orders."""

    client: httpx.AsyncClient
    pool: Pool
    admin_key: str
    publisher_id: int
    key: str
    merchant_id: int
    secret: str
    link: Any

    @classmethod
    async def open(cls, client: httpx.AsyncClient, pool: Pool, admin_key: str) -> Account:
        async with pool.acquire() as conn:
            await ensure_default_plan(conn)
            publisher_id = await new_publisher(conn)
            link = await new_link(conn, publisher_id)
            merchant_id, secret = await new_merchant(conn)
        response = await client.post(
            f"/api/v1/publishers/{publisher_id}/api-keys", json={}, headers=bearer(admin_key)
        )
        assert response.status_code == 201, response.text
        key = response.json()["key"]
        return cls(client, pool, admin_key, publisher_id, key, merchant_id, secret, link)

    async def new_order(
        self, placed: datetime, amount: str, *, new_buyer: bool = False, category: str = ""
    ) -> Order:
        """An order on a fresh click (nothing reported yet)."""
        async with self.pool.acquire() as conn:
            click_id = await add_click(conn, self.link, placed - timedelta(minutes=3))
        return Order(
            f"O-{uuid.uuid4().hex[:10]}",
            click_id,
            placed,
            amount,
            new_buyer,
            category or "home-garden",
        )

    async def post(
        self, order: Order, status: str, at: datetime, amount: str | None = None
    ) -> httpx.Response:
        """Report ``status`` of ``order`` effective ``at`` (a partial refund: the amount
        left); the raw answer."""
        body = order_body(
            order.ref,
            order.click_id,
            order.placed,
            amount or order.amount,
            status=status,
            status_time=at,
            new_buyer=order.new_buyer,
            category=order.category,
        )
        return await self.client.post(
            "/api/v1/postback", content=body, headers=signed(self.merchant_id, self.secret, body)
        )

    async def report(
        self, order: Order, status: str, at: datetime, amount: str | None = None
    ) -> dict[str, Any]:
        response = await self.post(order, status, at, amount)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def completed(
        self, placed: datetime, amount: str, *, after: timedelta = timedelta(days=2), **kw: Any
    ) -> Order:
        """An order reported completed ``after`` its purchase."""
        order = await self.new_order(placed, amount, **kw)
        await self.report(order, "completed", placed + after)
        return order

    async def close(self, period: str, status: int = 200) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/v1/periods/{period}/close",
            params={"publisher_id": self.publisher_id},
            headers=bearer(self.admin_key),
        )
        assert response.status_code == status, response.text
        result: dict[str, Any] = response.json()
        return result

    async def get(self, path: str, **params: str) -> Any:
        response = await self.client.get(path, params=params, headers=bearer(self.key))
        assert response.status_code == 200, response.text
        return response.json()

    async def balance(self) -> Decimal:
        return D((await self.get("/api/v1/money/balance"))["balance"])

    async def entries(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self.get("/api/v1/money/ledger", limit="500"))["items"]
        return found

    async def order_money(self, order: Order) -> dict[str, Any]:
        """The order as the API shows it (commission, charged_back, status, amount)."""
        items = (await self.get("/api/v1/orders", limit="500"))["items"]
        found: dict[str, Any] = next(o for o in items if o["order_id"] == order.ref)
        return found
