"""Links: a publisher's short code pointing at a destination on an allowed host.

Postgres is the source of truth; the redirect reads links through its own cache
(``app.edge.linkcache``), told of every change made here.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

import asyncpg

from app.db import Conn

CODE_PATTERN = r"^[A-Za-z0-9]{1,32}$"
_CODE = re.compile(CODE_PATTERN)
_CODE_ALPHABET = string.ascii_letters + string.digits
RANDOM_CODE_LENGTH = 9
MAX_DESTINATION_LENGTH = 2048
# Control characters, whitespace and backslashes have no business in a destination URL; some
# browsers "repair" them into a different host.
_FORBIDDEN_IN_URL = re.compile(r"[\x00-\x20\x7f\\]")


class LinkStatus(StrEnum):
    active = "active"
    disabled = "disabled"


class LinkError(Exception):
    """A link cannot be stored as asked (the message says why)."""


class CodeTaken(LinkError):
    pass


@dataclass(frozen=True)
class Link:
    id: int
    code: str
    publisher_id: int
    destination: str
    status: LinkStatus
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


def is_valid_code(code: str) -> bool:
    return _CODE.fullmatch(code) is not None


def random_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(RANDOM_CODE_LENGTH))


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """``example.com`` matches itself; ``*.example.com`` matches any subdomain, not itself."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def validate_destination(url: str, allowed_hosts: tuple[str, ...]) -> str:
    """Return the destination as stored, or raise LinkError saying what is wrong."""
    if len(url) > MAX_DESTINATION_LENGTH:
        raise LinkError(f"destination longer than {MAX_DESTINATION_LENGTH} characters")
    if _FORBIDDEN_IN_URL.search(url):
        raise LinkError("destination contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise LinkError(f"destination is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise LinkError("destination must be an http or https URL")
    if not host:
        raise LinkError("destination has no host")
    if parts.username is not None or parts.password is not None:
        raise LinkError("destination must not contain user credentials")
    if not host_allowed(host, allowed_hosts):
        raise LinkError(f"destination host {host!r} is not allowed")
    return url


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
                updated_at = now()
            WHERE id = $1 RETURNING {_COLUMNS}""",
        link_id,
        None if status is None else status.value,
        expires_at is not _UNCHANGED,
        None if expires_at is _UNCHANGED else expires_at,
    )
    if row is None:
        raise LinkError(f"link {link_id} does not exist")
    return _from_row(row)
