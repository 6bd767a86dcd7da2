"""Admin routes: publishers and their API keys; ``/me`` for any key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from app.accounts import publishers
from app.accounts.apikeys import MAX_KEY_NAME, Role, create_key, get_key
from app.accounts.publishers import PublisherKind
from app.api import caps
from app.api.bodies import JsonRoute
from app.api.deps import AdminDep, PrincipalDep, ResourcesDep, actor_of
from app.api.params import BodyId, Cursor, Id, Instant
from app.api.scope import acting_for, network_of
from app.audit.fields import API_KEY, PUBLISHER, snapshot
from app.audit.log import record
from app.errors import NotFound

router = APIRouter(route_class=JsonRoute, tags=["publishers"])
# The caps on publishers' clicks, orders and commission come with this router.
router.include_router(caps.router)

PublisherPath = Annotated[Id, Path(description="The publisher's id")]


class PublisherIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    name: str = Field(min_length=1, max_length=200)
    kind: PublisherKind = PublisherKind.publisher
    network_id: BodyId | None = None


class PublisherOut(BaseModel):
    id: int
    name: str
    kind: PublisherKind
    network_id: int | None
    created_at: datetime


class PublisherPage(BaseModel):
    items: list[PublisherOut]
    next_after: int | None


class ApiKeyIn(BaseModel):
    name: str = Field(default="", max_length=MAX_KEY_NAME)
    expires_at: Instant | None = Field(default=None, description="From then on: 401")


class ApiKeyOut(BaseModel):
    id: int
    key: str = Field(description="The key itself: shown this once, only its hash is stored.")
    role: Role
    publisher_id: int | None
    expires_at: datetime | None = None


class MeOut(BaseModel):
    role: Role
    publisher: PublisherOut | None


def _out(p: publishers.Publisher) -> PublisherOut:
    return PublisherOut(
        id=p.id, name=p.name, kind=p.kind, network_id=p.network_id, created_at=p.created_at
    )


@router.post("/publishers", status_code=201)
async def create_publisher(
    body: PublisherIn, admin: AdminDep, resources: ResourcesDep
) -> PublisherOut:
    async with resources.pool.acquire() as conn, conn.transaction():
        # A blank name or an unknown network raises PublisherError: 422.
        created = await publishers.create_publisher(conn, body.name, body.kind, body.network_id)
        await record(
            conn,
            actor_of(admin),
            "publisher.create",
            "publisher",
            created.id,
            after=snapshot(created, PUBLISHER),
            publisher_id=created.id,
        )
    return _out(created)


@router.get("/publishers")
async def list_publishers(
    principal: PrincipalDep,
    resources: ResourcesDep,
    after: Annotated[Cursor, Query()] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> PublisherPage:
    """An admin key: every publisher. A network's key: its members. Any other key: 403."""
    async with resources.pool.acquire() as conn:
        if principal.role is Role.admin:
            page = await publishers.list_publishers(conn, after=after, limit=limit)
        else:
            network = await network_of(conn, principal)
            page = await publishers.list_members(conn, network, after=after, limit=limit)
    return PublisherPage(
        items=[_out(p) for p in page], next_after=page[-1].id if len(page) == limit else None
    )


@router.get("/publishers/{publisher_id}")
async def get_publisher(
    publisher_id: PublisherPath, principal: PrincipalDep, resources: ResourcesDep
) -> PublisherOut:
    """An admin key: any publisher. A network's key: itself and its members (any other id
    answers 404, like a missing one). Any other key: 403."""
    async with resources.pool.acquire() as conn:
        if principal.role is not Role.admin:
            await network_of(conn, principal)  # 403 unless a network's key
            await acting_for(conn, principal, publisher_id)  # 404 unless itself or a member
        found = await publishers.get_publisher(conn, publisher_id)
    if found is None:
        raise NotFound(f"publisher {publisher_id} does not exist")
    return _out(found)


@router.post("/publishers/{publisher_id}/api-keys", status_code=201)
async def create_publisher_key(
    publisher_id: PublisherPath, body: ApiKeyIn, admin: AdminDep, resources: ResourcesDep
) -> ApiKeyOut:
    async with resources.pool.acquire() as conn, conn.transaction():
        if await publishers.get_publisher(conn, publisher_id) is None:
            raise NotFound(f"publisher {publisher_id} does not exist")
        key_id, key = await create_key(
            conn, Role.publisher, publisher_id, body.name, body.expires_at
        )
        created = await get_key(conn, key_id)
        assert created is not None
        # The key's prefix, role and owner: never the key itself.
        await record(
            conn,
            actor_of(admin),
            "api_key.create",
            "api_key",
            key_id,
            after=snapshot(created, API_KEY),
            publisher_id=publisher_id,
        )
    return ApiKeyOut(
        id=key_id,
        key=key,
        role=Role.publisher,
        publisher_id=publisher_id,
        expires_at=created.expires_at,  # as stored, in the form GET answers with
    )


@router.get("/me")
async def me(principal: PrincipalDep, resources: ResourcesDep) -> MeOut:
    if principal.publisher_id is None:
        return MeOut(role=principal.role, publisher=None)
    async with resources.pool.acquire() as conn:
        found = await publishers.get_publisher(conn, principal.publisher_id)
    return MeOut(role=principal.role, publisher=None if found is None else _out(found))
