"""Which publishers a call may act for, in one place: every route that takes a
``publisher_id`` or reads a publisher's link asks here.

- An admin key: any publisher, named with ``publisher_id`` (required).
- A publisher key: its own publisher. When that publisher is a network (``kind='network'``),
  also its members (``network_id`` = the network's id), named with ``publisher_id``;
  ``allow_members=False`` keeps a call to the key's own publisher (withdrawals: money is
  each publisher's own to request); a member named then answers 403 saying so, since the
  network may see that member anyway.

Anything else, a non-member or another network's member, answers exactly like a publisher or
link that does not exist (404): a key learns nothing of accounts it cannot see.
"""

from __future__ import annotations

from app.accounts.apikeys import Principal, Role
from app.accounts.publishers import PublisherKind, get_publisher, is_member, network_scope
from app.core.db import Conn
from app.errors import Forbidden, InvalidInput, NotFound
from app.links.model import Link

MEMBERS_REQUEST_THEIR_OWN = (
    "a network cannot request its members' withdrawals: each publisher requests its own"
)


async def acting_for(
    conn: Conn, principal: Principal, requested: int | None, *, allow_members: bool = True
) -> int:
    """The publisher id a call concerns: ``requested`` when the key may act for it, the
    key's own publisher when ``requested`` is None (a publisher key). Raises ``InvalidInput``
    (field ``publisher_id``) for an admin key naming none, ``Forbidden`` for a network's
    member with ``allow_members=False``, ``NotFound`` for a publisher the key cannot see or
    that does not exist."""
    if principal.role is Role.admin:
        if requested is None:
            raise InvalidInput("required with an admin key", field="publisher_id")
        if await get_publisher(conn, requested) is None:
            raise NotFound(f"publisher {requested} does not exist")
        return requested
    own = principal.publisher_id
    assert own is not None
    if requested is None or requested == own:
        return own
    if await is_member(conn, own, requested):
        if allow_members:
            return requested
        # The network sees this member (it is no secret): say the rule, not "does not exist".
        raise Forbidden(MEMBERS_REQUEST_THEIR_OWN)
    # The same words for a publisher that does not exist and one of another account: a key
    # learns nothing of the ids it cannot see.
    raise NotFound(f"publisher {requested} is not yours or your network's")


async def publishers_seen(conn: Conn, principal: Principal, requested: int | None) -> list[int]:
    """The publishers a list covers: the one ``requested`` (checked by ``acting_for``), or,
    for a publisher key naming none, its own and (a network's key) all its members'."""
    if requested is not None or principal.role is Role.admin:
        return [await acting_for(conn, principal, requested)]
    assert principal.publisher_id is not None
    return await network_scope(conn, principal.publisher_id)


async def may_see(conn: Conn, principal: Principal, publisher_id: int) -> bool:
    """True when the key may read what ``publisher_id`` owns (a link, an order): an admin
    key anything, a publisher key its own, a network's key its members' too."""
    if principal.role is Role.admin or publisher_id == principal.publisher_id:
        return True
    assert principal.publisher_id is not None
    return await is_member(conn, principal.publisher_id, publisher_id)


async def visible_link(conn: Conn, principal: Principal, link: Link | None) -> Link:
    """``link`` when the key may see it (``may_see``). Another publisher's link answers
    exactly like a missing one (``NotFound``): no existence leak."""
    if link is None or not await may_see(conn, principal, link.publisher_id):
        raise NotFound("no such link")
    return link


async def network_of(conn: Conn, principal: Principal) -> int:
    """The network a publisher key speaks for, for the routes that were admin-only before
    networks could read their members (``GET /publishers``). Raises ``Forbidden`` for the
    key of a publisher that is not a network: that call stays admin-only for it."""
    assert principal.publisher_id is not None
    found = await get_publisher(conn, principal.publisher_id)
    if found is None or found.kind is not PublisherKind.network:
        raise Forbidden("this needs an admin key")
    return found.id
