"""Merchants, their postback secrets, and the signature that authenticates a postback.

A postback carries three headers::

    X-Clicktrack-Merchant:  <merchant id>
    X-Clicktrack-Timestamp: <unix time, whole seconds>
    X-Clicktrack-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

Signing the timestamp with the body lets the receiver refuse old requests (replays) without
remembering them; a replay inside the allowed skew is harmless because postbacks are
idempotent.

A merchant owns a set of hosts (``shop.example.com``, ``*.example.com``, in
``app.core.hosts``' normal form): its postbacks attribute orders only to clicks on links to
them (``app.orders.attribution``). A merchant with no hosts attributes to any link, as every
merchant did before merchants had hosts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.core.chars import first_refused
from app.core.db import Conn
from app.core.hosts import normalise_host_pattern
from app.errors import InvalidInput, Unauthorized

SECRET_PREFIX = "ctm_"
SIGNATURE_PREFIX = "sha256="
MERCHANT_HEADER = "x-clicktrack-merchant"
TIMESTAMP_HEADER = "x-clicktrack-timestamp"
SIGNATURE_HEADER = "x-clicktrack-signature"
MAX_HOSTS = 100  # per merchant (a CHECK in migrations/021_attribution.sql, too)
_COLUMNS = "id, name, created_at, hosts"


class MerchantError(InvalidInput):
    """A merchant cannot be created or changed as asked (the message says why)."""


class SignatureError(Unauthorized):
    """The postback is not authentic or not fresh (the message says which)."""


@dataclass(frozen=True)
class Merchant:
    id: int
    name: str
    created_at: datetime
    hosts: tuple[str, ...]  # empty: any host


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The value of the signature header for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float,
    max_skew_s: int,
) -> None:
    """Raise SignatureError unless ``signature`` signs ``body`` at a fresh ``timestamp``."""
    if not timestamp or not signature:
        raise SignatureError("missing X-Clicktrack-Timestamp or X-Clicktrack-Signature header")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("X-Clicktrack-Timestamp must be unix time in whole seconds")
    if abs(now - int(timestamp)) > max_skew_s:
        raise SignatureError(
            f"X-Clicktrack-Timestamp is more than {max_skew_s} s away from the server's clock"
        )
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        raise SignatureError("the signature does not match the body")


def _merchant(row: asyncpg.Record) -> Merchant:
    return Merchant(row["id"], row["name"], row["created_at"], tuple(row["hosts"]))


def normalise_hosts(patterns: Iterable[str]) -> tuple[str, ...]:
    """Host patterns in their normal form, each once, in the order given. Raises
    ``MerchantError`` naming a pattern that is not a host nor ``*.`` and a domain name."""
    hosts: dict[str, None] = {}
    for pattern in patterns:
        try:
            hosts[normalise_host_pattern(pattern)] = None
        except ValueError as exc:
            raise MerchantError(str(exc), field="hosts") from None
    if len(hosts) > MAX_HOSTS:
        raise MerchantError(f"a merchant has at most {MAX_HOSTS} host patterns", field="hosts")
    return tuple(hosts)


async def create_merchant(conn: Conn, name: str, hosts: Iterable[str] = ()) -> tuple[Merchant, str]:
    """Store a new merchant owning ``hosts`` (none: any host); return it and its secret (to
    be shown once)."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise MerchantError("name must be 1 to 200 characters")
    if (refused := first_refused(name)) is not None:
        raise MerchantError(f"name must not contain control or invisible characters ({refused})")
    patterns = normalise_hosts(hosts)
    secret = new_secret()
    row = await conn.fetchrow(
        f"""INSERT INTO merchants (name, secret, hosts) VALUES ($1, $2, $3)
            ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}""",
        name,
        secret,
        list(patterns),
    )
    if row is None:
        raise MerchantError(f"a merchant named {name!r} already exists")
    return _merchant(row), secret


async def rotate_secret(conn: Conn, name: str) -> tuple[Merchant, str]:
    """Replace a merchant's secret (its old one stops working at once)."""
    secret = new_secret()
    row = await conn.fetchrow(
        f"UPDATE merchants SET secret = $2 WHERE name = $1 RETURNING {_COLUMNS}",
        name.strip(),
        secret,
    )
    if row is None:
        raise MerchantError(f"no merchant named {name.strip()!r}")
    return _merchant(row), secret


async def set_hosts(conn: Conn, name: str, hosts: Iterable[str]) -> Merchant:
    """Replace the hosts a merchant owns (none: any host). Orders already decided stay as
    they are; the next ones are judged by the new hosts."""
    patterns = normalise_hosts(hosts)
    row = await conn.fetchrow(
        f"UPDATE merchants SET hosts = $2 WHERE name = $1 RETURNING {_COLUMNS}",
        name.strip(),
        list(patterns),
    )
    if row is None:
        raise MerchantError(f"no merchant named {name.strip()!r}")
    return _merchant(row)


async def list_merchants(conn: Conn) -> list[Merchant]:
    """Every merchant, by id."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM merchants ORDER BY id")
    return [_merchant(r) for r in rows]


async def merchant_secret(conn: Conn, merchant_id: int) -> str | None:
    """The secret of an enabled merchant, or None."""
    secret: str | None = await conn.fetchval(
        "SELECT secret FROM merchants WHERE id = $1 AND disabled_at IS NULL", merchant_id
    )
    return secret
