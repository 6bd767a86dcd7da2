"""Links in Postgres: create, read, list, change. Every change is announced to the redirect
workers by ``app.links.mirror.publish_change`` (the caller's job, after its commit)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from app.core.db import Conn
from app.links.model import CodeTaken, Link, LinkError, LinkStatus, is_valid_code, random_code

_COLUMNS = "id, code, publisher_id, destination, status, expires_at, created_at, updated_at"


def _from_row(row: asyncpg.Record) -> Link:
    return Link(
        row["id"],
        row["code"],
        row["publisher_id"],
        row["destination"],
        LinkStatus(row["status"]),
        row["expires_at"],
        row["created_at"],
        row["updated_at"],
    )


async def create_link(
    conn: Conn,
    publisher_id: int,
    destination: str,
    *,
    code: str | None = None,
    expires_at: datetime | None = None,
) -> Link:
    """Insert a link. A custom code that is taken raises CodeTaken; a random one is redrawn."""
    if code is not None and not is_valid_code(code):
        raise LinkError("code must be 1 to 32 letters or digits")
    for _attempt in range(8):
        row = await conn.fetchrow(
            f"""INSERT INTO links (code, publisher_id, destination, expires_at)
                VALUES ($1, $2, $3, $4) ON CONFLICT (code) DO NOTHING RETURNING {_COLUMNS}""",
            code or random_code(),
            publisher_id,
            destination,
            expires_at,
        )
        if row is not None:
            return _from_row(row)
        if code is not None:
            raise CodeTaken(f"code {code!r} is already taken")
    raise LinkError("could not draw a free random code; try again")


async def get_link(conn: Conn, code: str) -> Link | None:
    if not is_valid_code(code):
        return None
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM links WHERE code = $1", code)
    return None if row is None else _from_row(row)


async def list_links(
    conn: Conn, publisher_id: int, *, after: int = 0, limit: int = 50
) -> list[Link]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM links WHERE publisher_id = $1 AND id > $2
            ORDER BY id LIMIT $3""",
        publisher_id,
        after,
        limit,
    )
    return [_from_row(r) for r in rows]


_UNCHANGED = object()


async def update_link(
    conn: Conn,
    link_id: int,
    *,
    status: LinkStatus | None = None,
    expires_at: datetime | object | None = _UNCHANGED,
) -> Link:
    """Change status and/or expiry (``expires_at=None`` clears it; omitted leaves it)."""
    row = await conn.fetchrow(
        f"""UPDATE links SET
                status = coalesce($2, status),
                expires_at = CASE WHEN $3 THEN $4 ELSE expires_at END,
                -- Later than the row's last change even when this transaction began first
                -- and waited for its lock: the mirror keeps the newest copy by this time.
                updated_at = greatest(clock_timestamp(), updated_at + interval '1 microsecond')
            WHERE id = $1 RETURNING {_COLUMNS}""",
        link_id,
        None if status is None else status.value,
        expires_at is not _UNCHANGED,
        None if expires_at is _UNCHANGED else expires_at,
    )
    if row is None:
        raise LinkError(f"link {link_id} does not exist")
    return _from_row(row)


async def set_destination(conn: Conn, link_id: int, expected: str, destination: str) -> Link | None:
    """Rewrite a link's destination if it is still ``expected`` (None otherwise: it changed
    meanwhile, and is left as it is). Only for a destination's normal form
    (``app.links.recheck``): a link's destination is otherwise fixed once written."""
    row = await conn.fetchrow(
        f"""UPDATE links SET destination = $3,
                updated_at = greatest(clock_timestamp(), updated_at + interval '1 microsecond')
            WHERE id = $1 AND destination = $2 RETURNING {_COLUMNS}""",
        link_id,
        expected,
        destination,
    )
    return None if row is None else _from_row(row)
