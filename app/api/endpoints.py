"""A publisher's postback and webhook endpoints (docs/postbacks.md): create, list, change,
rotate a webhook's secret, send a test event (the delivery log: ``app/api/deliveries.py``,
included in this router). A publisher key manages its own (a network's
key its members' too, naming ``publisher_id``); an admin key any, naming ``publisher_id``
(``app/api/scope.py``). Every change is in the audit log, never a secret.

A webhook's secret is answered once, by the call that makes it (create, rotate).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from app.accounts.apikeys import Principal
from app.api import deliveries
from app.api.bodies import JsonRoute
from app.api.deps import PrincipalDep, ResourcesDep, actor_of
from app.api.params import BodyId, Id
from app.api.scope import acting_for, may_see
from app.api.zones import in_zone
from app.audit.log import record
from app.core.db import Conn
from app.core.resources import Resources
from app.errors import InvalidInput, NotFound
from app.postbacks import outbox, store
from app.postbacks.destinations import destination_rules, written_refusal
from app.postbacks.endpoints import Endpoint, EndpointKind
from app.postbacks.events import SUBSCRIBABLE, EventType
from app.postbacks.templates import MACROS

router = APIRouter(route_class=JsonRoute, tags=["postbacks"])
# The delivery log's routes come with this router: app/main.py includes one.
router.include_router(deliveries.router)

EndpointId = Annotated[Id, Path(description="The endpoint's id")]
_MACRO_LIST = ", ".join("{" + name + "}" for name in MACROS)
_EVENT_LIST = ", ".join(SUBSCRIBABLE)


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    kind: EndpointKind = Field(
        description="postback: a GET to the URL with its macros filled; webhook: a signed JSON POST"
    )
    url: str = Field(
        max_length=4096,
        description=f"http(s) URL, at most 2048 characters; a postback's may hold the macros "
        f"{_MACRO_LIST} in its path or query",
    )
    events: list[str] = Field(min_length=1, max_length=16, description=f"Any of: {_EVENT_LIST}")
    publisher_id: BodyId | None = Field(
        default=None, description="Admin keys (required) and networks' keys (a member)"
    )


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, max_length=4096)
    events: list[str] | None = Field(default=None, min_length=1, max_length=16)
    active: StrictBool | None = Field(
        default=None, description="false: nothing new is queued for it, and what is queued waits"
    )

    @model_validator(mode="after")
    def _something_given(self) -> EndpointPatch:
        """An empty patch, or a field sent as null, is a mistake: said, not ignored."""
        if not self.model_fields_set:
            raise ValueError("nothing to change: send url, events or active")
        for name in sorted(self.model_fields_set):
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null: leave it out to keep it as it is")
        return self


class EndpointOut(BaseModel):
    id: int
    publisher_id: int
    kind: EndpointKind
    url: str
    events: list[EventType]
    active: bool
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointSecretOut(EndpointOut):
    secret: str | None = Field(
        description="A webhook's signing secret: shown this once, never again (a postback: null)"
    )


class EndpointPage(BaseModel):
    items: list[EndpointOut]


class TestOut(BaseModel):
    delivery_id: int = Field(description="Follow it in GET /postbacks/deliveries/{id}")


def endpoint_out(found: Endpoint, resources: Resources) -> EndpointOut:
    tz = resources.settings.period_tz
    return EndpointOut(
        id=found.id,
        publisher_id=found.publisher_id,
        kind=found.kind,
        url=found.url,
        events=list(found.events),
        active=found.active,
        disabled_at=in_zone(found.disabled_at, tz),
        created_at=in_zone(found.created_at, tz),
        updated_at=in_zone(found.updated_at, tz),
    )


def _state(found: Endpoint) -> dict[str, Any]:
    """What the audit log keeps of an endpoint: never its secret."""
    return {
        "id": found.id,
        "publisher_id": found.publisher_id,
        "kind": found.kind,
        "url": found.url,
        "events": list(found.events),
        "disabled_at": found.disabled_at,
    }


async def visible_endpoint(conn: Conn, principal: Principal, endpoint_id: int) -> Endpoint:
    """The endpoint when the key may see it; another's answers like a missing one (404)."""
    found = await store.get_endpoint(conn, endpoint_id)
    if found is None or not await may_see(conn, principal, found.publisher_id):
        raise NotFound("no such endpoint")
    return found


async def _record(
    conn: Conn, principal: Principal, verb: str, before: Endpoint | None, after: Endpoint
) -> None:
    await record(
        conn,
        actor_of(principal),
        f"postback_endpoint.{verb}",
        "postback_endpoint",
        after.id,
        before=None if before is None else _state(before),
        after=_state(after),
        publisher_id=after.publisher_id,
    )


def _check_destination(url: str, resources: Resources) -> None:
    """Refuse a URL whose host the sender would never connect to (an address the
    destination rules refuse, or localhost): 422, rather than a day of failed retries."""
    refusal = written_refusal(url, destination_rules(resources.settings))
    if refusal is not None:
        raise InvalidInput(
            f"{refusal}: the sender would refuse to send there (an operator allows such "
            "destinations with CLICKTRACK_POSTBACK_ALLOW_PRIVATE or "
            "CLICKTRACK_POSTBACK_ALLOW_NETWORKS)",
            field="url",
        )


@router.post("/postbacks/endpoints", status_code=201)
async def create_endpoint(
    body: EndpointIn, principal: PrincipalDep, resources: ResourcesDep
) -> EndpointSecretOut:
    """A new endpoint, active at once; a webhook's secret is in the answer, this once. 422
    for a URL the rules refuse (an unknown macro is named) or an unknown event."""
    _check_destination(body.url, resources)
    async with resources.pool.acquire() as conn, conn.transaction():
        owner = await acting_for(conn, principal, body.publisher_id)
        created, secret = await store.create_endpoint(conn, owner, body.kind, body.url, body.events)
        await _record(conn, principal, "create", None, created)
    return EndpointSecretOut(**endpoint_out(created, resources).model_dump(), secret=secret)


@router.get("/postbacks/endpoints")
async def list_endpoints(
    principal: PrincipalDep,
    resources: ResourcesDep,
    publisher_id: Annotated[Id | None, Query(description="Admin keys: required")] = None,
) -> EndpointPage:
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        found = await store.list_endpoints(conn, owner)
    return EndpointPage(items=[endpoint_out(e, resources) for e in found])


@router.get("/postbacks/endpoints/{endpoint_id}")
async def get_endpoint(
    endpoint_id: EndpointId, principal: PrincipalDep, resources: ResourcesDep
) -> EndpointOut:
    async with resources.pool.acquire() as conn:
        found = await visible_endpoint(conn, principal, endpoint_id)
    return endpoint_out(found, resources)


@router.patch("/postbacks/endpoints/{endpoint_id}")
async def update_endpoint(
    endpoint_id: EndpointId, body: EndpointPatch, principal: PrincipalDep, resources: ResourcesDep
) -> EndpointOut:
    """Change its URL, its events, or disable (``active: false``) or enable it."""
    if body.url is not None:
        _check_destination(body.url, resources)
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await visible_endpoint(conn, principal, endpoint_id)
        after = await store.update_endpoint(
            conn, before, url=body.url, events=body.events, active=body.active
        )
        if after != before:
            await _record(conn, principal, "update", before, after)
    return endpoint_out(after, resources)


@router.post("/postbacks/endpoints/{endpoint_id}/rotate-secret")
async def rotate_endpoint_secret(
    endpoint_id: EndpointId, principal: PrincipalDep, resources: ResourcesDep
) -> EndpointSecretOut:
    """A webhook's new secret (shown once); the old one stops signing at once. 422 for a
    postback endpoint (it has no secret)."""
    async with resources.pool.acquire() as conn, conn.transaction():
        found = await visible_endpoint(conn, principal, endpoint_id)
        secret = await store.rotate_secret(conn, found)
        await _record(conn, principal, "rotate_secret", found, found)
    return EndpointSecretOut(**endpoint_out(found, resources).model_dump(), secret=secret)


@router.post("/postbacks/endpoints/{endpoint_id}/test", status_code=202)
async def send_test_event(
    endpoint_id: EndpointId, principal: PrincipalDep, resources: ResourcesDep
) -> TestOut:
    """Queue a ``test`` event (made-up order values) for this endpoint; the sender delivers
    it like any other (a disabled endpoint's waits until it is enabled)."""
    async with resources.pool.acquire() as conn, conn.transaction():
        found = await visible_endpoint(conn, principal, endpoint_id)
        delivery_id = await outbox.emit_test(conn, found.id, found.publisher_id)
    return TestOut(delivery_id=delivery_id)
