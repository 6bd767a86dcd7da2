"""Which publisher a call acts for: a publisher key its own; an admin key the one it names."""

from __future__ import annotations

from app.accounts.apikeys import Principal, Role
from app.accounts.publishers import get_publisher
from app.core.db import Conn
from app.errors import InvalidInput, NotFound


async def acting_for(conn: Conn, principal: Principal, requested: int | None) -> int:
    """The publisher id a call concerns; another publisher's id answers like a missing one."""
    if principal.role is Role.admin:
        if requested is None:
            raise InvalidInput("required with an admin key", field="publisher_id")
        if await get_publisher(conn, requested) is None:
            raise NotFound(f"publisher {requested} does not exist")
        return requested
    assert principal.publisher_id is not None
    if requested is not None and requested != principal.publisher_id:
        raise NotFound(f"publisher {requested} does not exist")
    return principal.publisher_id
