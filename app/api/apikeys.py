"""API keys: list, revoke, rotate. An admin key acts on every key; a publisher key on its
own publisher's keys only (another's answers 404, like a key that does not exist).

Rotating makes a new key (shown once) for the same owner, role and name; the old key is
revoked at once, or, with ``overlap_seconds``, expires that many seconds later (at most an
hour) so that a deployment can switch over."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from app.accounts import apikeys
from app.accounts.apikeys import MAX_OVERLAP_S, ApiKey, KeyStatus, Principal, Role
from app.api.bodies import JsonRoute
from app.api.deps import PrincipalDep, ResourcesDep, actor_of
from app.api.params import Cursor, Id, Instant
from app.audit.fields import API_KEY, snapshot
from app.audit.log import record
from app.errors import NotFound

router = APIRouter(route_class=JsonRoute, tags=["api keys"])

KeyId = Annotated[Id, Path(description="The key's id")]


class ApiKeyInfo(BaseModel):
    id: int
    prefix: str = Field(description="The key's first characters, to recognise it by")
    role: Role
    publisher_id: int | None
    name: str
    status: KeyStatus
    created_at: datetime
    last_used_at: datetime | None = Field(description="Updated at most once a minute")
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: int | None = Field(description="The key that replaced this one (rotation)")


class ApiKeyPage(BaseModel):
    items: list[ApiKeyInfo]
    next_after: int | None = Field(description="Pass as `after` for the next page.")


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_seconds: StrictInt = Field(
        default=0,
        ge=0,
        le=MAX_OVERLAP_S,
        description="0: the old key is revoked now; else it expires this many seconds later",
    )
    expires_at: Instant | None = Field(default=None, description="The new key's expiry")


class RotatedOut(BaseModel):
    id: int
    key: str = Field(description="The new key itself: shown this once, only its hash is stored.")
    role: Role
    publisher_id: int | None
    expires_at: datetime | None
    replaces: ApiKeyInfo


def info(key: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=key.id,
        prefix=key.prefix,
        role=key.role,
        publisher_id=key.publisher_id,
        name=key.name,
        status=key.status,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        replaced_by=key.replaced_by,
    )


def _owner(principal: Principal) -> int | None:
    """The publisher whose keys the caller may see: None for an admin (every key)."""
    return None if principal.role is Role.admin else principal.publisher_id


@router.get("/api-keys")
async def list_api_keys(
    principal: PrincipalDep,
    resources: ResourcesDep,
    publisher_id: Annotated[Id | None, Query(description="Admin keys only")] = None,
    role: Role | None = None,
    include_revoked: bool = False,
    after: Annotated[Cursor, Query(description="Cursor: `next_after` of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ApiKeyPage:
    owner = _owner(principal)
    if owner is not None:
        if publisher_id is not None and publisher_id != owner:
            raise NotFound(f"publisher {publisher_id} does not exist")
        publisher_id = owner
    async with resources.pool.acquire() as conn:
        page = await apikeys.list_keys(
            conn,
            publisher_id,
            role=role,
            include_revoked=include_revoked,
            after=after,
            limit=limit,
        )
    return ApiKeyPage(
        items=[info(k) for k in page], next_after=page[-1].id if len(page) == limit else None
    )


@router.get("/api-keys/{key_id}")
async def get_api_key(
    key_id: KeyId, principal: PrincipalDep, resources: ResourcesDep
) -> ApiKeyInfo:
    async with resources.pool.acquire() as conn:
        found = await apikeys.get_key(conn, key_id, _owner(principal))
    if found is None:
        raise NotFound(f"API key {key_id} does not exist")
    return info(found)


@router.delete("/api-keys/{key_id}")
async def revoke_api_key(
    key_id: KeyId, principal: PrincipalDep, resources: ResourcesDep
) -> ApiKeyInfo:
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await apikeys.get_key(conn, key_id, _owner(principal))
        revoked = await apikeys.revoke_key(conn, key_id, _owner(principal))
        if before is None or revoked is None:
            raise NotFound(f"API key {key_id} does not exist")
        if before.revoked_at is None:  # revoking a revoked key changes nothing: no entry
            await record(
                conn,
                actor_of(principal),
                "api_key.revoke",
                "api_key",
                key_id,
                before=snapshot(before, API_KEY),
                after=snapshot(revoked, API_KEY),
                publisher_id=revoked.publisher_id,
            )
    return info(revoked)


@router.post("/api-keys/{key_id}/rotate", status_code=201)
async def rotate_api_key(
    key_id: KeyId, body: RotateIn, principal: PrincipalDep, resources: ResourcesDep
) -> RotatedOut:
    async with resources.pool.acquire() as conn, conn.transaction():
        old = await apikeys.get_key(conn, key_id, _owner(principal))
        if old is None:
            raise NotFound(f"API key {key_id} does not exist")
        new_id, key = await apikeys.rotate_key(
            conn, old, overlap_s=body.overlap_seconds, expires_at=body.expires_at
        )
        replaced = await apikeys.get_key(conn, key_id)
        created = await apikeys.get_key(conn, new_id)
        assert replaced is not None and created is not None
        await record(
            conn,
            actor_of(principal),
            "api_key.rotate",
            "api_key",
            key_id,
            before=snapshot(old, API_KEY),
            after={**snapshot(replaced, API_KEY), "overlap_seconds": body.overlap_seconds},
            publisher_id=old.publisher_id,
        )
    return RotatedOut(
        id=new_id,
        key=key,
        role=old.role,
        publisher_id=old.publisher_id,
        expires_at=created.expires_at,  # as stored, in the form GET answers with
        replaces=info(replaced),
    )
