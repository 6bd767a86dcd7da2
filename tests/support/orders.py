"""Helpers for order and money tests: publishers, links, clicks, merchants, signed postbacks."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.accounts import merchants
from app.core.db import Conn
from app.links import model as link_model
from app.links import store as link_store
from app.money import plans_store
from app.money.plan import DEFAULT_PLAN_FILE, read_plan_file
from app.money.plans_store import PutOutcome


def uuid7_at(when: datetime) -> uuid.UUID:
    """A UUIDv7 whose embedded time is ``when`` (as the redirect makes them)."""
    ms = int(when.timestamp() * 1000)
    # secrets, not random: Hypothesis seeds the random module, which would repeat ids.
    rand_a = secrets.randbits(12)
    rand_b = secrets.randbits(62)
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)


async def new_publisher(conn: Conn, name: str = "Money test") -> int:
    publisher_id: int = await conn.fetchval(
        "INSERT INTO publishers (name) VALUES ($1) RETURNING id", name
    )
    return publisher_id


async def new_link(conn: Conn, publisher_id: int) -> link_model.Link:
    return await link_store.create_link(conn, publisher_id, "https://shop.example.com/item/1")


async def add_click(
    conn: Conn,
    link: link_model.Link,
    when: datetime,
    *,
    flags: int = 0,
    af: str | None = None,
    cn: str | None = None,
    cv: str | None = None,
    dp: str | None = None,
    click_id: uuid.UUID | None = None,
    session_id: str = "s",
    ip: str | None = None,
) -> str:
    """Store a click as the flusher would; return its id. ``session_id`` and ``ip`` as the
    click row keeps them (the default session is shared by every such click: tests of the
    per-session fraud rules pass their own)."""
    click_id = click_id or uuid7_at(when)
    await conn.execute(
        """INSERT INTO clicks (click_id, ts, link_id, code, publisher_id, af, cn, cv, dp,
               session_id, session_new, method, flags, ip)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11, true, 'GET', $10, $12)""",
        click_id,
        when,
        link.id,
        link.code,
        link.publisher_id,
        af,
        cn,
        cv,
        dp,
        flags,
        session_id,
        ip,
    )
    return str(click_id)


async def new_merchant(conn: Conn) -> tuple[int, str]:
    merchant, secret = await merchants.create_merchant(conn, f"Shop {uuid.uuid4().hex[:10]}")
    return merchant.id, secret


async def ensure_default_plan(conn: Conn) -> None:
    outcome = await plans_store.put_plan(conn, read_plan_file(DEFAULT_PLAN_FILE))
    assert outcome in (PutOutcome.created, PutOutcome.unchanged)


def order_body(
    order_id: str,
    click_id: str,
    order_time: datetime,
    amount: Decimal | str,
    *,
    status: str = "incomplete",
    status_time: datetime | None = None,
    category: str = "home-garden",
    new_buyer: bool = False,
) -> bytes:
    body: dict[str, Any] = {
        "order_id": order_id,
        "click_id": click_id,
        "order_time": order_time.isoformat(),
        "amount": str(amount),
        "currency": "USD",
        "category": category,
        "new_buyer": new_buyer,
        "status": status,
    }
    if status_time is not None:
        body["status_time"] = status_time.isoformat()
    return json.dumps(body).encode()


def signed(
    merchant_id: int, secret: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-Clicktrack-Merchant": str(merchant_id),
        "X-Clicktrack-Timestamp": stamp,
        "X-Clicktrack-Signature": merchants.sign(secret, stamp, body),
    }


def at(text: str) -> datetime:
    """An ISO time, UTC unless it says otherwise."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
