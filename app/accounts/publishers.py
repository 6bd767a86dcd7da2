"""Publishers and networks (a network is a publisher that owns sub-accounts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from app.core.chars import first_refused
from app.core.db import Conn
from app.errors import InvalidInput


class PublisherKind(StrEnum):
    publisher = "publisher"
    network = "network"


class PublisherError(InvalidInput):
    """A publisher cannot be created as asked (the message says why)."""


@dataclass(frozen=True)
class Publisher:
    id: int
    name: str
    kind: PublisherKind
    network_id: int | None
    created_at: datetime


_COLUMNS = "id, name, kind, network_id, created_at"


def _from_row(row: asyncpg.Record) -> Publisher:
    return Publisher(
        row["id"], row["name"], PublisherKind(row["kind"]), row["network_id"], row["created_at"]
    )


async def create_publisher(
    conn: Conn,
    name: str,
    kind: PublisherKind = PublisherKind.publisher,
    network_id: int | None = None,
) -> Publisher:
    """Create a publisher, a network (``kind``), or a network's member (``network_id``: a
    publisher of kind network; a network itself cannot be a member). Raises
    ``PublisherError`` (422) saying which rule the request breaks."""
    name = name.strip()
    if not name:
        raise PublisherError("name must not be blank")
    if len(name) > 200:
        raise PublisherError("name must be at most 200 characters")
    if (refused := first_refused(name)) is not None:
        raise PublisherError(f"name must not contain control or invisible characters ({refused})")
    if kind is PublisherKind.network and network_id is not None:
        # One level only: a network's members are publishers, never networks (is_member
        # and network_scope read one level).
        raise PublisherError(
            "a network cannot be a member of another network: leave network_id out, or "
            "create a publisher",
            field="network_id",
        )
    async with conn.transaction():
        if network_id is not None:
            network_kind = await conn.fetchval(
                "SELECT kind FROM publishers WHERE id = $1 FOR SHARE", network_id
            )
            if network_kind is None:
                raise PublisherError(f"network {network_id} does not exist", field="network_id")
            if network_kind != PublisherKind.network:
                raise PublisherError(
                    f"publisher {network_id} is not a network: a member's network_id names a "
                    "publisher of kind network",
                    field="network_id",
                )
        row = await conn.fetchrow(
            f"INSERT INTO publishers (name, kind, network_id) VALUES ($1, $2, $3) "
            f"RETURNING {_COLUMNS}",
            name,
            kind.value,
            network_id,
        )
    assert row is not None
    return _from_row(row)


async def get_publisher(conn: Conn, publisher_id: int) -> Publisher | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM publishers WHERE id = $1", publisher_id)
    return None if row is None else _from_row(row)


async def list_publishers(conn: Conn, *, after: int = 0, limit: int = 50) -> list[Publisher]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM publishers WHERE id > $1 ORDER BY id LIMIT $2", after, limit
    )
    return [_from_row(r) for r in rows]


async def is_member(conn: Conn, network_id: int, publisher_id: int) -> bool:
    """True when ``publisher_id`` is a member of ``network_id`` and ``network_id`` is a
    network (one level: a member's own members are not the network's)."""
    found = await conn.fetchval(
        """SELECT true FROM publishers m JOIN publishers n ON n.id = m.network_id
           WHERE m.id = $1 AND n.id = $2 AND n.kind = 'network'""",
        publisher_id,
        network_id,
    )
    return found is True


async def network_scope(conn: Conn, publisher_id: int) -> list[int]:
    """The publishers ``publisher_id``'s key sees: itself, and its members when it is a
    network (itself first, then the members by id)."""
    rows = await conn.fetch(
        """SELECT m.id FROM publishers n JOIN publishers m ON m.network_id = n.id
           WHERE n.id = $1 AND n.kind = 'network' ORDER BY m.id""",
        publisher_id,
    )
    return [publisher_id, *(r["id"] for r in rows)]


async def list_members(
    conn: Conn, network_id: int, *, after: int = 0, limit: int = 50
) -> list[Publisher]:
    """The members of network ``network_id`` with an id above ``after``, by id, at most
    ``limit`` (none when it is not a network)."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM publishers
            WHERE network_id = $1 AND id > $2
              AND EXISTS (SELECT 1 FROM publishers n WHERE n.id = $1 AND n.kind = 'network')
            ORDER BY id LIMIT $3""",
        network_id,
        after,
        limit,
    )
    return [_from_row(r) for r in rows]
