"""Endpoints in Postgres: create, read, change, rotate a webhook's secret.

The secret is returned only by the calls that make it (create, rotate): never listed.
"""

from __future__ import annotations

import asyncpg

from app.core.db import Conn
from app.errors import NotFound
from app.postbacks import signing
from app.postbacks.endpoints import (
    MAX_ENDPOINTS,
    Endpoint,
    EndpointError,
    EndpointKind,
    check_endpoint_url,
    check_events,
)
from app.postbacks.events import EventType

_COLUMNS = "id, publisher_id, kind, url, events, disabled_at, created_at, updated_at"


def _endpoint(row: asyncpg.Record) -> Endpoint:
    return Endpoint(
        id=row["id"],
        publisher_id=row["publisher_id"],
        kind=EndpointKind(row["kind"]),
        url=row["url"],
        events=tuple(EventType(e) for e in row["events"]),
        disabled_at=row["disabled_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def create_endpoint(
    conn: Conn, publisher_id: int, kind: EndpointKind, url: str, events: list[str]
) -> tuple[Endpoint, str | None]:
    """A new active endpoint; return it and, for a webhook, its secret (shown once). Raises
    ``TemplateError``/``EndpointError`` for a URL or events the rules refuse, or past
    ``MAX_ENDPOINTS`` for the publisher."""
    url = check_endpoint_url(kind, url)
    wanted = check_events(events)
    await _room_for_one_more(conn, publisher_id)
    secret = signing.new_secret() if kind is EndpointKind.webhook else None
    row = await conn.fetchrow(
        f"""INSERT INTO postback_endpoints (publisher_id, kind, url, events, secret)
            VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}""",
        publisher_id,
        kind.value,
        url,
        [e.value for e in wanted],
        secret,
    )
    assert row is not None
    return _endpoint(row), secret


async def _room_for_one_more(conn: Conn, publisher_id: int) -> None:
    """Raise ``EndpointError`` when the publisher has ``MAX_ENDPOINTS`` active endpoints
    already (disabled ones do not count: they send nothing). Locks the publisher's row, so
    that racing creations and enablings count one after the other."""
    await conn.execute("SELECT 1 FROM publishers WHERE id = $1 FOR UPDATE", publisher_id)
    count: int = await conn.fetchval(
        """SELECT count(*) FROM postback_endpoints
           WHERE publisher_id = $1 AND disabled_at IS NULL""",
        publisher_id,
    )
    if count >= MAX_ENDPOINTS:
        raise EndpointError(
            f"a publisher has at most {MAX_ENDPOINTS} active endpoints: disable one first"
        )


async def get_endpoint(conn: Conn, endpoint_id: int) -> Endpoint | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM postback_endpoints WHERE id = $1", endpoint_id
    )
    return None if row is None else _endpoint(row)


async def list_endpoints(conn: Conn, publisher_id: int) -> list[Endpoint]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM postback_endpoints WHERE publisher_id = $1 ORDER BY id",
        publisher_id,
    )
    return [_endpoint(r) for r in rows]


async def update_endpoint(
    conn: Conn,
    endpoint: Endpoint,
    *,
    url: str | None = None,
    events: list[str] | None = None,
    active: bool | None = None,
) -> Endpoint:
    """Change what is given (None: kept); the endpoint as it was when nothing differs.
    Raises like ``create_endpoint`` (enabling one counts against ``MAX_ENDPOINTS``)."""
    new_url = endpoint.url if url is None else check_endpoint_url(endpoint.kind, url)
    wanted = endpoint.events if events is None else check_events(events)
    disable = None if active is None or active == endpoint.active else not active
    if new_url == endpoint.url and list(wanted) == list(endpoint.events) and disable is None:
        return endpoint
    if disable is False:
        await _room_for_one_more(conn, endpoint.publisher_id)
    row = await conn.fetchrow(
        f"""UPDATE postback_endpoints
               SET url = $2, events = $3, updated_at = now(),
                   disabled_at = CASE WHEN $4::bool IS NULL THEN disabled_at
                                      WHEN $4 THEN coalesce(disabled_at, now()) END
             WHERE id = $1 RETURNING {_COLUMNS}""",
        endpoint.id,
        new_url,
        [e.value for e in wanted],
        disable,
    )
    if row is None:
        raise NotFound(f"endpoint {endpoint.id} does not exist")
    return _endpoint(row)


async def rotate_secret(conn: Conn, endpoint: Endpoint) -> str:
    """A webhook's new secret (shown once); the old one stops signing at once. Raises
    ``EndpointError`` for a postback endpoint (it has no secret)."""
    if endpoint.kind is not EndpointKind.webhook:
        raise EndpointError("a postback endpoint has no secret: only webhooks are signed")
    secret = signing.new_secret()
    await conn.execute(
        "UPDATE postback_endpoints SET secret = $2, updated_at = now() WHERE id = $1",
        endpoint.id,
        secret,
    )
    return secret
