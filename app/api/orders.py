"""Orders: a publisher lists its own; an admin lists any (unattributed ones included),
disqualifies orders, retries attribution, and approves or rejects orders a fraud rule held
for review (``app/orders/review.py``)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from app.accounts.apikeys import Principal, Role
from app.api.bodies import JsonRoute
from app.api.deps import AdminDep, PrincipalDep, ResourcesDep, actor_of
from app.api.params import PRINTABLE, Cursor, Id, Instant, TrackingText
from app.api.scope import acting_for, may_see
from app.api.zones import TimeZoneName, in_zone
from app.audit.fields import ORDER, record_change, snapshot
from app.audit.log import record
from app.caps.screening import order_screening
from app.core.db import Conn
from app.errors import Conflict, NotFound
from app.links.model import echoed
from app.orders import review, store
from app.orders.attribution import UnattributedReason, reattribute
from app.orders.status import Attribution, OrderStatus
from app.orders.store import Order, OrderQuery
from app.traffic.days import zone_name

router = APIRouter(route_class=JsonRoute, tags=["orders"])


class OrderOut(BaseModel):
    id: int
    merchant_id: int
    order_id: str = Field(description="The merchant's order id.")
    click_id: str
    order_time: datetime
    amount: Decimal
    currency: str
    category: str
    new_buyer: bool
    status: OrderStatus
    status_time: datetime
    completed_time: datetime | None
    attribution: Attribution
    disqualified_reason: str | None
    unattributed_reason: UnattributedReason | None = Field(
        description="Why an unattributed order is: order_before_click, "
        "outside_attribution_window or click_not_for_this_merchant (final: it is never "
        "attributed), click_not_found (tried again when its click arrives), not_a_click_id."
    )
    qualifies: bool = Field(
        description="Completed within 60 days, and attributed (a clean click, not held nor "
        "declined)."
    )
    publisher_id: int | None
    code: str | None
    af: str | None
    cn: str | None
    cv: str | None
    dp: str | None
    held_rule: str | None = Field(
        description="The fraud rule that held the order for review (kept after the review): "
        "click_to_order_too_fast, too_many_orders_per_session, too_many_orders_per_address, "
        "flagged_click, repeat_new_buyer."
    )
    held_at: datetime | None
    review: str | None = Field(description="`approved` or `rejected`, once reviewed.")
    reviewed_at: datetime | None
    declined_cap_id: int | None = Field(description="The cap that declined the order.")
    declined_at: datetime | None
    commission: Decimal | None = Field(
        description="What the order holds in the ledger before any chargeback: its credit, "
        "less partial refunds, plus or minus incentive adjustments (null until credited)."
    )
    charged_back: Decimal | None = Field(description="Taken back by a later close, if it was.")
    created_at: datetime
    updated_at: datetime
    time_zone: TimeZoneName


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_after: int | None = Field(description="Pass as `after` for the next page.")
    time_zone: TimeZoneName


class DisqualifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    reason: str = Field(min_length=1, max_length=500, pattern=PRINTABLE)


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(
        default=None, min_length=1, max_length=review.MAX_REASON, pattern=PRINTABLE
    )


class ReattributeOut(BaseModel):
    attributed: int = Field(
        description="Orders tied to their click (clean or flagged); those refused for a "
        "reason (order before the click, outside the window, another merchant's link) are not."
    )


def order_out(order: Order, tz: tzinfo) -> OrderOut:
    """The order as answered: its times on the clock of ``tz``, the period time zone."""
    return OrderOut(
        id=order.id,
        merchant_id=order.merchant_id,
        order_id=order.order_ref,
        click_id=order.click_ref,
        order_time=in_zone(order.ordered_at, tz),
        amount=order.amount,
        currency=order.currency,
        category=order.category,
        new_buyer=order.new_buyer,
        status=order.status,
        status_time=in_zone(order.status_at, tz),
        completed_time=in_zone(order.completed_at, tz),
        attribution=order.attribution,
        disqualified_reason=order.disqualified_reason,
        unattributed_reason=order.unattributed_reason,
        qualifies=order.qualifies,
        publisher_id=order.publisher_id,
        code=order.code,
        af=order.af,
        cn=order.cn,
        cv=order.cv,
        dp=order.dp,
        held_rule=order.held_rule,
        held_at=in_zone(order.held_at, tz),
        review=order.review,
        reviewed_at=in_zone(order.reviewed_at, tz),
        declined_cap_id=order.declined_cap_id,
        declined_at=in_zone(order.declined_at, tz),
        commission=order.commission,
        charged_back=order.charged_back,
        created_at=in_zone(order.created_at, tz),
        updated_at=in_zone(order.updated_at, tz),
        time_zone=zone_name(tz),
    )


async def _visible(conn: Conn, order: Order, principal: Principal) -> bool:
    """An admin key sees every order; a publisher key its own; a network's key its members'
    too. Another's order answers like a missing one: no existence leak."""
    if principal.role is Role.admin:
        return True
    return order.publisher_id is not None and await may_see(conn, principal, order.publisher_id)


@router.get("/orders")
async def list_orders(
    principal: PrincipalDep,
    resources: ResourcesDep,
    ordered_from: Annotated[Instant | None, Query(description="Order time >= this")] = None,
    ordered_before: Annotated[Instant | None, Query(description="Order time < this")] = None,
    status: Annotated[list[OrderStatus] | None, Query(description="Any of these")] = None,
    attribution: Attribution | None = None,
    af: TrackingText = None,
    cn: TrackingText = None,
    cv: TrackingText = None,
    dp: TrackingText = None,
    publisher_id: Annotated[
        Id | None, Query(description="Admin keys only; omitted: every order")
    ] = None,
    after: Annotated[Cursor, Query(description="Cursor: `next_after` of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> OrderPage:
    async with resources.pool.acquire() as conn:
        if principal.role is Role.admin and publisher_id is None:
            owner = None
        else:
            owner = await acting_for(conn, principal, publisher_id)
        query = OrderQuery(
            publisher_id=owner,
            ordered_from=ordered_from,
            ordered_before=ordered_before,
            statuses=tuple(status or ()),
            attribution=attribution,
            af=af,
            cn=cn,
            cv=cv,
            dp=dp,
        )
        page = await store.list_orders(conn, query, after=after, limit=limit)
    tz = resources.settings.period_tz
    return OrderPage(
        items=[order_out(o, tz) for o in page],
        next_after=page[-1].id if len(page) == limit else None,
        time_zone=zone_name(tz),
    )


async def _find(conn: Conn, order_id: str, principal: Principal) -> Order:
    """Digits only: the order's ``id``; any other text: the merchant's order id, among the
    orders the caller sees (several merchants may use the same one: 409, naming each ``id``)."""
    if order_id.isascii() and order_id.isdigit():
        number = int(order_id)
        order = await store.get_order(conn, number) if number < 2**63 else None
        if order is None or not await _visible(conn, order, principal):
            raise NotFound("no such order")
        return order
    found = [
        order
        for order in await store.orders_by_ref(conn, order_id, None)
        if await _visible(conn, order, principal)
    ]
    if not found:
        raise NotFound("no such order")
    if len(found) > 1:
        ids = ", ".join(str(order.id) for order in found)
        raise Conflict(
            f"{len(found)} orders of different merchants have the order id {echoed(order_id)!r}; "
            f"ask for one by its id: {ids}"
        )
    return found[0]


@router.get("/orders/{order_id}")
async def get_order(
    order_id: Annotated[
        str, Path(description="The order's `id`, or the merchant's order id (not digits only)")
    ],
    principal: PrincipalDep,
    resources: ResourcesDep,
) -> OrderOut:
    async with resources.pool.acquire() as conn:
        order = await _find(conn, order_id, principal)
    return order_out(order, resources.settings.period_tz)


@router.post("/orders/{order_id}/disqualify")
async def disqualify_order(
    order_id: Annotated[Id, Path(description="The order's `id`")],
    body: DisqualifyIn,
    admin: AdminDep,
    resources: ResourcesDep,
) -> OrderOut:
    """Disqualify an order (fraud, invalid traffic). A credited order is charged back by the
    next period close."""
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await store.get_order(conn, order_id) if abs(order_id) < 2**63 else None
        if before is None:
            raise NotFound("no such order")
        order = await store.disqualify(conn, order_id, body.reason)
        assert order is not None  # it exists: disqualify only changes it
        # An order already disqualified keeps its first reason: nothing changed, no entry.
        if before.attribution is not Attribution.disqualified:
            await record(
                conn,
                actor_of(admin),
                "order.disqualify",
                "order",
                order.id,
                before=snapshot(before, ORDER),
                after=snapshot(order, ORDER),
                publisher_id=order.publisher_id,
            )
    return order_out(order, resources.settings.period_tz)


@router.post("/orders/reattribute")
async def reattribute_orders(admin: AdminDep, resources: ResourcesDep) -> ReattributeOut:
    """Attribute the orders whose clicks have arrived since they were reported (each judged
    by the attribution rules; one refused keeps its reason and is not tried again)."""
    async with resources.pool.acquire() as conn, conn.transaction():
        attributed = await reattribute(conn, screening=order_screening(resources.settings))
        # One entry for the run (it touches any number of orders): how many it tied.
        await record(
            conn,
            actor_of(admin),
            "order.reattribute",
            "order",
            "waiting",
            after={"attributed": attributed},
        )
    return ReattributeOut(attributed=attributed)


async def _record_review(
    conn: Conn, admin: Principal, verb: str, before: Order | None, after: Order
) -> None:
    """The audit entry of a review ``verb`` (approve, reject), in the caller's transaction."""
    await record_change(
        conn, actor_of(admin), "order", verb, before, after, ORDER, publisher_id=after.publisher_id
    )


@router.post("/orders/{order_id}/approve")
async def approve_order(
    order_id: Annotated[Id, Path(description="The order's `id`")],
    admin: AdminDep,
    resources: ResourcesDep,
) -> OrderOut:
    """Approve an order held for review: it goes through its publisher's caps as if
    attributed now, and ends `attributed` (its events queued) or `declined` (a full cap).
    409 when the order is not held."""
    screening = order_screening(resources.settings)
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await store.get_order(conn, order_id)
        order = await review.approve(conn, order_id, screening)
        await _record_review(conn, admin, "approve", before, order)
    return order_out(order, resources.settings.period_tz)


@router.post("/orders/{order_id}/reject")
async def reject_order(
    order_id: Annotated[Id, Path(description="The order's `id`")],
    admin: AdminDep,
    resources: ResourcesDep,
    body: Annotated[RejectIn | None, Body()] = None,
) -> OrderOut:
    """Reject an order held for review: `disqualified` for good, with the reason
    `rejected on review: <rule>[: <reason>]`. 409 when the order is not held."""
    reason = None if body is None else body.reason
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await store.get_order(conn, order_id)
        order = await review.reject(conn, order_id, reason)
        await _record_review(conn, admin, "reject", before, order)
    return order_out(order, resources.settings.period_tz)
