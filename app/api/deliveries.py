"""The delivery log of a publisher's postbacks and webhooks (docs/postbacks.md): each
delivery with its attempts (status code, latency, the response's first bytes, the error),
and replays, one or many. A publisher key reads its own (a network's key its members' too,
naming ``publisher_id``); an admin key any, naming ``publisher_id``."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from app.accounts.apikeys import Principal
from app.api.bodies import JsonRoute
from app.api.deps import PrincipalDep, ResourcesDep, actor_of
from app.api.params import BodyId, Id
from app.api.scope import acting_for, may_see
from app.api.zones import in_zone
from app.audit.log import record
from app.core.db import Conn
from app.core.resources import Resources
from app.errors import NotFound
from app.postbacks import deliveries as log
from app.postbacks import store
from app.postbacks.deliveries import MAX_REPLAY, Delivery, DeliveryQuery
from app.postbacks.events import EventType

router = APIRouter(route_class=JsonRoute, tags=["postbacks"])


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class AttemptOut(BaseModel):
    at: datetime
    outcome: str = Field(description="delivered, retry (tried again later) or failed (no more)")
    status_code: int | None
    latency_ms: int
    response: str | None = Field(description="The response's first 1 KiB, as text")
    error: str | None


class DeliveryOut(BaseModel):
    id: int
    event_id: uuid.UUID = Field(description="The same on every attempt and replay")
    endpoint_id: int
    publisher_id: int
    event: str
    status: DeliveryStatus
    attempts: int = Field(description="Since it was queued or last replayed")
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    payload: dict[str, Any] = Field(description="The macros' values")
    tries: list[AttemptOut] = Field(description="Every attempt, oldest first")


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_before: int | None = Field(description="Pass as `before` for the next page")


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    publisher_id: BodyId | None = None
    endpoint_id: BodyId | None = None
    status: DeliveryStatus | None = Field(default=None, description="delivered or failed")
    event: EventType | None = None


class ReplayOut(BaseModel):
    replayed: int = Field(description=f"Deliveries queued again (at most {MAX_REPLAY})")


def delivery_out(found: Delivery, resources: Resources) -> DeliveryOut:
    tz = resources.settings.period_tz
    return DeliveryOut(
        id=found.id,
        event_id=found.event_id,
        endpoint_id=found.endpoint_id,
        publisher_id=found.publisher_id,
        event=found.event,
        status=DeliveryStatus(found.status),
        attempts=found.attempts,
        next_attempt_at=in_zone(found.next_attempt_at, tz),
        last_status_code=found.last_status_code,
        last_error=found.last_error,
        delivered_at=in_zone(found.delivered_at, tz),
        created_at=in_zone(found.created_at, tz),
        payload=found.payload,
        tries=[
            AttemptOut(
                at=in_zone(t.at, tz),
                outcome=t.outcome,
                status_code=t.status_code,
                latency_ms=t.latency_ms,
                response=t.response,
                error=t.error,
            )
            for t in found.tries
        ],
    )


async def _visible(conn: Conn, principal: Principal, delivery_id: int) -> Delivery:
    found = await log.get_delivery(conn, delivery_id)
    if found is None or not await may_see(conn, principal, found.publisher_id):
        raise NotFound("no such delivery")
    return found


async def _owned_endpoint(conn: Conn, owner: int, endpoint_id: int | None) -> None:
    """A filter naming an endpoint that is not the publisher's is a 404, as the endpoint
    itself would be, not an empty answer."""
    if endpoint_id is None:
        return
    found = await store.get_endpoint(conn, endpoint_id)
    if found is None or found.publisher_id != owner:
        raise NotFound(f"publisher {owner} has no endpoint {endpoint_id}")


@router.get("/postbacks/deliveries")
async def list_deliveries(
    principal: PrincipalDep,
    resources: ResourcesDep,
    publisher_id: Annotated[Id | None, Query(description="Admin keys: required")] = None,
    endpoint_id: Id | None = None,
    status: DeliveryStatus | None = None,
    event: EventType | None = None,
    before: Annotated[Id | None, Query(description="Cursor: `next_before` of a page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> DeliveryPage:
    """Deliveries newest first, each with its attempts."""
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        await _owned_endpoint(conn, owner, endpoint_id)
        query = DeliveryQuery(owner, endpoint_id, None if status is None else status.value, event)
        page = await log.list_deliveries(conn, query, before=before, limit=limit)
    return DeliveryPage(
        items=[delivery_out(d, resources) for d in page],
        next_before=page[-1].id if len(page) == limit else None,
    )


@router.get("/postbacks/deliveries/{delivery_id}")
async def get_delivery(
    delivery_id: Annotated[Id, Path(description="The delivery's id")],
    principal: PrincipalDep,
    resources: ResourcesDep,
) -> DeliveryOut:
    async with resources.pool.acquire() as conn:
        found = await _visible(conn, principal, delivery_id)
    return delivery_out(found, resources)


@router.post("/postbacks/deliveries/{delivery_id}/replay")
async def replay_delivery(
    delivery_id: Annotated[Id, Path(description="The delivery's id")],
    principal: PrincipalDep,
    resources: ResourcesDep,
) -> DeliveryOut:
    """Send a delivered or failed delivery again, with the same event id (a receiver that
    drops repeats drops it); a pending one is left as it is."""
    async with resources.pool.acquire() as conn, conn.transaction():
        found = await _visible(conn, principal, delivery_id)
        if await log.replay(conn, found.id):
            before, after = log.replay_states(found)
            await record(
                conn,
                actor_of(principal),
                log.REPLAY_ACTION,
                log.REPLAY_TARGET,
                found.id,
                before=before,
                after=after,
                publisher_id=found.publisher_id,
            )
        again = await log.get_delivery(conn, found.id)
    assert again is not None
    return delivery_out(again, resources)


@router.post("/postbacks/replay")
async def replay_deliveries(
    body: ReplayIn, principal: PrincipalDep, resources: ResourcesDep
) -> ReplayOut:
    """Send again every delivered or failed delivery matching the filters (at most
    ``MAX_REPLAY`` per call, oldest first)."""
    async with resources.pool.acquire() as conn, conn.transaction():
        owner = await acting_for(conn, principal, body.publisher_id)
        await _owned_endpoint(conn, owner, body.endpoint_id)
        status = None if body.status is None else body.status.value
        query = DeliveryQuery(owner, body.endpoint_id, status, body.event)
        replayed = await log.replay_matching(conn, query)
        if replayed:
            await record(
                conn,
                actor_of(principal),
                log.REPLAY_ACTION,
                log.REPLAY_TARGET,
                "matching",
                after=log.replay_matching_state(query, replayed),
                publisher_id=owner,
            )
    return ReplayOut(replayed=replayed)
