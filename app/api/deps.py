"""Dependencies shared by the API routes: resources, and who is calling."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from app.accounts.apikeys import Principal, Role, check_key
from app.audit.log import Actor, api_actor
from app.core.resources import Resources
from app.errors import Forbidden, Unauthorized


def get_resources(request: Request) -> Resources:
    resources: Resources = request.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_principal(request: Request, resources: ResourcesDep) -> Principal:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("missing bearer API key: send 'Authorization: Bearer <key>'")
    async with resources.pool.acquire() as conn:
        checked = await check_key(conn, key.strip())
    if not isinstance(checked, Principal):
        raise Unauthorized(checked.message)
    return checked


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_admin(principal: PrincipalDep) -> Principal:
    if principal.role is not Role.admin:
        raise Forbidden("this needs an admin key")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


def current_time() -> datetime:
    """The instant a request is judged at (a dependency: a test may fix it)."""
    return datetime.now(UTC)


NowDep = Annotated[datetime, Depends(current_time)]


def actor_of(principal: Principal, *, via: str = "") -> Actor:
    """The audit log's actor for a call made with ``principal``'s key."""
    return api_actor(principal.key_id, principal.role.value, principal.publisher_id, via=via)
