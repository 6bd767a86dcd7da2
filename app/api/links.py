"""Publisher routes: create, list, get, disable and expire links.

A bad destination or code raises ``LinkError`` (422), a custom code in use ``CodeTaken``
(409): they reach the error handler (``app/api/errors.py``) as raised."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.accounts.apikeys import Principal, Role
from app.accounts.publishers import get_publisher
from app.api.deps import PrincipalDep, ResourcesDep
from app.core.resources import Resources
from app.errors import InvalidInput, NotFound
from app.links import mirror
from app.links import model as link_model
from app.links import store as link_store
from app.links.model import CODE_PATTERN, Link, LinkStatus
from app.links.urls import MAX_DESTINATION_BYTES

router = APIRouter(tags=["links"])


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    destination: str = Field(max_length=MAX_DESTINATION_BYTES)
    code: str | None = Field(default=None, pattern=CODE_PATTERN)
    expires_at: AwareDatetime | None = None
    publisher_id: int | None = Field(
        default=None, ge=1, description="Admin keys only: the publisher that owns the link."
    )


class LinkPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    status: LinkStatus | None = None
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the link stops redirecting (410); null clears it."
    )


class LinkOut(BaseModel):
    code: str
    short_url: str
    destination: str
    status: LinkStatus
    expires_at: datetime | None
    publisher_id: int
    created_at: datetime
    updated_at: datetime


class LinkPage(BaseModel):
    items: list[LinkOut]
    next_after: int | None = Field(description="Pass as `after` for the next page.")


def _out(link: Link, resources: Resources) -> LinkOut:
    return LinkOut(
        code=link.code,
        short_url=f"{resources.settings.public_base_url}/e/{link.code}",
        destination=link.destination,
        status=link.status,
        expires_at=link.expires_at,
        publisher_id=link.publisher_id,
        created_at=link.created_at,
        updated_at=link.updated_at,
    )


def _owner_for_write(principal: Principal, requested: int | None) -> int:
    if principal.role is Role.admin:
        if requested is None:
            raise InvalidInput("required with an admin key", field="publisher_id")
        return requested
    assert principal.publisher_id is not None
    if requested is not None and requested != principal.publisher_id:
        raise NotFound(f"publisher {requested} does not exist")
    return principal.publisher_id


def _visible(link: Link | None, principal: Principal) -> Link:
    """Another publisher's link answers exactly like a missing one: no existence leak."""
    if link is None or (
        principal.role is not Role.admin and link.publisher_id != principal.publisher_id
    ):
        raise NotFound("no such link")
    return link


@router.post("/links", status_code=201)
async def create_link(body: LinkIn, principal: PrincipalDep, resources: ResourcesDep) -> LinkOut:
    owner = _owner_for_write(principal, body.publisher_id)
    destination = link_model.validate_destination(
        body.destination, resources.settings.allowed_hosts
    )
    async with resources.pool.acquire() as conn:
        if await get_publisher(conn, owner) is None:
            raise NotFound(f"publisher {owner} does not exist")
        link = await link_store.create_link(
            conn, owner, destination, code=body.code, expires_at=body.expires_at
        )
    # A code may have been looked up (and remembered as unknown) before it existed.
    await mirror.publish_change(
        resources.redis,
        resources.keys,
        link,
        legacy=resources.settings.link_mirror_legacy_writes,
    )
    return _out(link, resources)


@router.get("/links")
async def list_links(
    principal: PrincipalDep,
    resources: ResourcesDep,
    after: Annotated[int, Query(ge=0, description="Cursor: `next_after` of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    publisher_id: Annotated[int | None, Query(ge=1, description="Admin keys only")] = None,
) -> LinkPage:
    owner = _owner_for_write(principal, publisher_id)
    async with resources.pool.acquire() as conn:
        page = await link_store.list_links(conn, owner, after=after, limit=limit)
    return LinkPage(
        items=[_out(link, resources) for link in page],
        next_after=page[-1].id if len(page) == limit else None,
    )


@router.get("/links/{code}")
async def get_link(code: str, principal: PrincipalDep, resources: ResourcesDep) -> LinkOut:
    async with resources.pool.acquire() as conn:
        link = _visible(await link_store.get_link(conn, code), principal)
    return _out(link, resources)


@router.patch("/links/{code}")
async def update_link(
    code: str, body: LinkPatch, principal: PrincipalDep, resources: ResourcesDep
) -> LinkOut:
    if not body.model_fields_set:
        raise InvalidInput("nothing to change: send status and/or expires_at")
    async with resources.pool.acquire() as conn, conn.transaction():
        link = _visible(await link_store.get_link(conn, code), principal)
        if "expires_at" in body.model_fields_set:
            link = await link_store.update_link(
                conn, link.id, status=body.status, expires_at=body.expires_at
            )
        else:
            link = await link_store.update_link(conn, link.id, status=body.status)
    await mirror.publish_change(
        resources.redis,
        resources.keys,
        link,
        legacy=resources.settings.link_mirror_legacy_writes,
    )
    return _out(link, resources)
