"""The log of a merchant's received postbacks, for operators (docs/postbacks.md, "Received
postbacks"): what arrived, what it changed, why it was refused; and replays, one or many.

Admin keys only: a postback is the merchant's word about an order, before it is anyone's
commission. A replay runs a logged body again as if it arrived when it first did (its
signature was verified then; the secret may have been rotated since), and logs the run as a
new row pointing at the one it replayed.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.accounts import merchants
from app.accounts.apikeys import Principal
from app.api.bodies import JsonRoute
from app.api.deps import AdminDep, ResourcesDep, actor_of
from app.api.params import PRINTABLE, Id
from app.api.postback import Ran, run_postback
from app.api.zones import in_zone
from app.audit.log import record
from app.core.db import Conn
from app.core.resources import Resources
from app.errors import Conflict, InvalidInput, NotFound
from app.orders import received as log
from app.orders.received import MAX_REPLAY, Received, ReceivedQuery

router = APIRouter(route_class=JsonRoute, tags=["merchants"])

MerchantId = Annotated[Id, Path(description="The merchant's id")]
OrderRef = Annotated[str, Query(min_length=1, max_length=128, pattern=PRINTABLE)]


class ReceivedOutcome(StrEnum):
    created = "created"
    updated = "updated"
    unchanged = "unchanged"
    refused = "refused"


class ReceivedOut(BaseModel):
    id: int
    merchant_id: int
    received_at: datetime = Field(description="When it arrived (a replay: when it ran)")
    replay_of: int | None = Field(description="The row a replay ran again")
    http_status: int = Field(description="What the merchant was answered (200 unless refused)")
    outcome: ReceivedOutcome
    error: str | None = Field(description="Why it was refused, as answered")
    body: str | None = Field(
        description="The body sent, as text; null when its signature did not verify (a "
        "stranger's bytes are not kept) or it was too large"
    )
    order_id: str | None = Field(description="The merchant's order id, when the body names one")
    status_before: str | None = Field(description="The order's status before (null: new)")
    status_after: str | None
    attribution: str | None


class ReceivedPage(BaseModel):
    items: list[ReceivedOut]
    next_before: int | None = Field(description="Pass as `before` for the next page")


class ReplayMatchingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    outcome: ReceivedOutcome = Field(
        default=ReceivedOutcome.refused, description="Which postbacks to run again"
    )
    order_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=PRINTABLE)
    since: AwareDatetime | None = Field(default=None, description="Received at or after")
    until: AwareDatetime | None = Field(default=None, description="Received before")


class ReplayMatchingOut(BaseModel):
    replayed: int = Field(description=f"Postbacks run again (at most {MAX_REPLAY}, oldest first)")
    outcomes: dict[str, int] = Field(description="How many of the runs ended in each outcome")
    items: list[int] = Field(description="The new log rows' ids, in the order they ran")


def received_out(found: Received, resources: Resources) -> ReceivedOut:
    return ReceivedOut(
        id=found.id,
        merchant_id=found.merchant_id,
        received_at=in_zone(found.received_at, resources.settings.period_tz),
        replay_of=found.replay_of,
        http_status=found.http_status,
        outcome=ReceivedOutcome(found.outcome),
        error=found.error,
        body=None if found.body is None else found.body.decode("utf-8", "replace"),
        order_id=found.order_ref,
        status_before=found.status_before,
        status_after=found.status_after,
        attribution=found.attribution,
    )


async def _merchant_disabled(conn: Conn, merchant_id: int) -> bool:
    found = await merchants.get_merchant(conn, merchant_id)
    if found is None:
        raise NotFound(f"merchant {merchant_id} does not exist")
    return found.disabled_at is not None


@router.get("/merchants/{merchant_id}/postbacks")
async def list_received(
    merchant_id: MerchantId,
    _admin: AdminDep,
    resources: ResourcesDep,
    outcome: ReceivedOutcome | None = None,
    order_id: OrderRef | None = None,
    since: Annotated[AwareDatetime | None, Query(description="Received at or after")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Received before")] = None,
    before: Annotated[Id | None, Query(description="Cursor: `next_before` of a page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> ReceivedPage:
    """The merchant's received postbacks, newest first (replays included)."""
    async with resources.pool.acquire() as conn:
        await _merchant_disabled(conn, merchant_id)
        kind = None if outcome is None else outcome.value
        query = ReceivedQuery(merchant_id, kind, order_id, since, until)
        page = await log.list_received(conn, query, before=before, limit=limit)
    return ReceivedPage(
        items=[received_out(r, resources) for r in page],
        next_before=page[-1].id if len(page) == limit else None,
    )


@router.get("/merchants/{merchant_id}/postbacks/{received_id}")
async def get_received(
    merchant_id: MerchantId,
    received_id: Annotated[Id, Path(description="The log row's id")],
    _admin: AdminDep,
    resources: ResourcesDep,
) -> ReceivedOut:
    async with resources.pool.acquire() as conn:
        found = await log.get_received(conn, merchant_id, received_id)
    if found is None:
        raise NotFound(f"merchant {merchant_id} has no received postback {received_id}")
    return received_out(found, resources)


async def _replay(
    conn: Conn, admin: Principal, resources: Resources, found: Received, disabled: bool
) -> Ran:
    """Run ``found``'s body again, logged as a new row whatever its outcome (a refusal is
    logged there, not raised)."""
    assert found.body is not None
    ran = await run_postback(
        conn,
        found.merchant_id,
        disabled,
        found.body,
        found.received_at,
        resources.settings,
        replay_of=found.id,
    )
    await record(
        conn,
        actor_of(admin),
        "received_postback.replay",
        "received_postback",
        found.id,
        after={"replay": ran.row_id, "outcome": ran.outcome},
    )
    return ran


@router.post("/merchants/{merchant_id}/postbacks/{received_id}/replay")
async def replay_received(
    merchant_id: MerchantId,
    received_id: Annotated[Id, Path(description="The log row's id")],
    admin: AdminDep,
    resources: ResourcesDep,
) -> ReceivedOut:
    """Run one received postback again; answer the new log row (its outcome says what the
    run did: an order created or updated, unchanged, or refused and why). 409 when its body
    was not kept (its signature did not verify: there is nothing trustworthy to run)."""
    async with resources.pool.acquire() as conn:
        disabled = await _merchant_disabled(conn, merchant_id)
        found = await log.get_received(conn, merchant_id, received_id)
        if found is None:
            raise NotFound(f"merchant {merchant_id} has no received postback {received_id}")
        if found.body is None:
            raise Conflict(
                f"received postback {received_id} cannot be replayed: its body was not kept "
                "(its signature did not verify, or it was too large)"
            )
        ran = await _replay(conn, admin, resources, found, disabled)
        again = await log.get_received(conn, merchant_id, ran.row_id)
    assert again is not None
    return received_out(again, resources)


@router.post("/merchants/{merchant_id}/postbacks/replay")
async def replay_matching(
    merchant_id: MerchantId, body: ReplayMatchingIn, admin: AdminDep, resources: ResourcesDep
) -> ReplayMatchingOut:
    """Run again every received postback matching the filters whose body was kept (by
    default the refused ones; replays themselves are not picked), oldest first, at most
    ``MAX_REPLAY`` per call: e.g. after enabling a merchant disabled by mistake."""
    if body.since and body.until and body.since >= body.until:
        raise InvalidInput("must be after since", field="until")
    query = ReceivedQuery(merchant_id, body.outcome.value, body.order_id, body.since, body.until)
    outcomes: dict[str, int] = {}
    ids: list[int] = []
    async with resources.pool.acquire() as conn:
        disabled = await _merchant_disabled(conn, merchant_id)
        for found in await log.replayable(conn, query):
            ran = await _replay(conn, admin, resources, found, disabled)
            ids.append(ran.row_id)
            outcomes[ran.outcome] = outcomes.get(ran.outcome, 0) + 1
    return ReplayMatchingOut(replayed=len(ids), outcomes=outcomes, items=ids)
