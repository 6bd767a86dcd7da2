"""Links in Postgres: create, read, list, change. Every change is announced to the redirect
workers by ``app.links.mirror.publish_change`` (the caller's job, after its commit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from app.core.db import Conn
from app.links.model import (
    CodeTaken,
    Link,
    LinkError,
    LinkStatus,
    Rule,
    echoed,
    is_valid_code,
    random_code,
)
from app.links.rules import as_json, from_stored

_COLUMNS = "id, code, publisher_id, destination, status, expires_at, created_at, updated_at, rules"


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
        from_stored(orjson.loads(row["rules"])),  # jsonb arrives as text
    )


def _rules_json(rules: Sequence[Rule]) -> str:
    return orjson.dumps(as_json(rules)).decode()


async def create_link(
    conn: Conn,
    publisher_id: int,
    destination: str,
    *,
    code: str | None = None,
    expires_at: datetime | None = None,
    rules: Sequence[Rule] = (),
) -> Link:
    """Insert a link. A custom code that is taken raises CodeTaken; a random one is redrawn.
    ``destination`` and ``rules`` must already be validated (``model.validate_destination``,
    ``rules.validate_rules``)."""
    if code is not None and not is_valid_code(code):
        raise LinkError("code must be 1 to 32 letters or digits")
    for _attempt in range(8):
        row = await conn.fetchrow(
            f"""INSERT INTO links (code, publisher_id, destination, expires_at, rules)
                VALUES ($1, $2, $3, $4, $5::jsonb)
                ON CONFLICT (code) DO NOTHING RETURNING {_COLUMNS}""",
            code or random_code(),
            publisher_id,
            destination,
            expires_at,
            _rules_json(rules),
        )
        if row is not None:
            return _from_row(row)
        if code is not None:
            raise CodeTaken(f"code {echoed(code)!r} is already taken")
    raise LinkError("could not draw a free random code; try again")


async def get_link(conn: Conn, code: str, *, for_update: bool = False) -> Link | None:
    """The link of ``code`` (None: none). ``for_update``: lock its row until the caller's
    transaction ends, so the state read is the one changed (an audit entry's ``before``)."""
    if not is_valid_code(code):
        return None
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM links WHERE code = $1{lock}", code)
    return None if row is None else _from_row(row)


# A stored destination's host: the authority of the normalised URL (scheme://authority/...,
# app/links/urls.py) without brackets and port. Spelt exactly as in the index
# links_publisher_host (migrations/026_links_archive.sql), so the planner can use it.
_HOST_SQL = (
    "regexp_replace(split_part(split_part(destination, '://', 2), '/', 1), "
    "'^\\[([^]]*)\\](:[0-9]+)?$|^([^:]*)(:[0-9]+)?$', '\\1\\3')"
)


@dataclass(frozen=True)
class LinkFilter:
    """Which links a list shows. ``statuses``: any of these (empty: all but archived);
    ``q``: a substring of the code or the destination, compared case-insensitively;
    ``host``: the destination's host in its normal form (``app.core.hosts``); ``created_from``
    (inclusive) and ``created_to`` (exclusive): instants bounding ``created_at``."""

    statuses: tuple[LinkStatus, ...] = ()
    q: str | None = None
    host: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


async def list_links(
    conn: Conn,
    publisher_ids: Sequence[int],
    *,
    after: int = 0,
    limit: int = 50,
    where: LinkFilter = LinkFilter(),  # frozen: one shared default is safe
) -> list[Link]:
    """The links of ``publisher_ids`` with an id above ``after`` (the cursor), in id order,
    at most ``limit``, that ``where`` lets through."""
    statuses = [s.value for s in where.statuses] or [
        s.value for s in LinkStatus if s is not LinkStatus.archived
    ]
    # Each filter is "$n IS NULL OR ...": one statement text for every combination (one
    # prepared plan each side of the cache), and the host condition spelt as the index is.
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM links
            WHERE publisher_id = ANY($1::bigint[]) AND id > $2 AND status = ANY($4::text[])
              AND ($5::text IS NULL OR strpos(lower(code), $5) > 0
                   OR strpos(lower(destination), $5) > 0)
              AND ($6::text IS NULL OR {_HOST_SQL} = $6)
              AND ($7::timestamptz IS NULL OR created_at >= $7)
              AND ($8::timestamptz IS NULL OR created_at < $8)
            ORDER BY id LIMIT $3""",
        list(publisher_ids),
        after,
        limit,
        statuses,
        None if where.q is None else where.q.lower(),
        where.host,
        where.created_from,
        where.created_to,
    )
    return [_from_row(r) for r in rows]


_UNCHANGED = object()


async def update_link(
    conn: Conn,
    link_id: int,
    *,
    status: LinkStatus | None = None,
    expires_at: datetime | object | None = _UNCHANGED,
    destination: str | None = None,
    rules: Sequence[Rule] | None = None,
) -> Link:
    """Change status, expiry, destination and/or rules (``expires_at=None`` clears it;
    omitted leaves it; ``rules=()`` removes them, None leaves them; ``destination`` and
    ``rules`` must already be validated: ``model.validate_destination``,
    ``rules.validate_rules``)."""
    row = await conn.fetchrow(
        f"""UPDATE links SET
                status = coalesce($2, status),
                expires_at = CASE WHEN $3 THEN $4 ELSE expires_at END,
                destination = coalesce($5, destination),
                rules = coalesce($6::jsonb, rules),
                -- Later than the row's last change even when this transaction began first
                -- and waited for its lock: the mirror keeps the newest copy by this time.
                updated_at = greatest(clock_timestamp(), updated_at + interval '1 microsecond')
            WHERE id = $1 RETURNING {_COLUMNS}""",
        link_id,
        None if status is None else status.value,
        expires_at is not _UNCHANGED,
        None if expires_at is _UNCHANGED else expires_at,
        destination,
        None if rules is None else _rules_json(rules),
    )
    if row is None:
        raise LinkError(f"link {link_id} does not exist")
    return _from_row(row)


async def set_destination(conn: Conn, link_id: int, expected: str, destination: str) -> Link | None:
    """Rewrite a link's destination if it is still ``expected`` (None otherwise: it changed
    meanwhile, and is left as it is). Only for a destination's normal form
    (``app.links.recheck``); a publisher's change of destination is ``update_link``'s."""
    row = await conn.fetchrow(
        f"""UPDATE links SET destination = $3,
                updated_at = greatest(clock_timestamp(), updated_at + interval '1 microsecond')
            WHERE id = $1 AND destination = $2 RETURNING {_COLUMNS}""",
        link_id,
        expected,
        destination,
    )
    return None if row is None else _from_row(row)
