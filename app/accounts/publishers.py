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
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise PublisherError("name must be 1 to 200 characters")
    if (refused := first_refused(name)) is not None:
        raise PublisherError(f"name must not contain control or invisible characters ({refused})")
    async with conn.transaction():
        if network_id is not None:
            network_kind = await conn.fetchval(
                "SELECT kind FROM publishers WHERE id = $1 FOR SHARE", network_id
            )
            if network_kind != PublisherKind.network:
                raise PublisherError(f"network {network_id} does not exist")
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
