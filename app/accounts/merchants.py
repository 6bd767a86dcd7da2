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

A disabled merchant's postbacks are refused (its orders already stored stay as they are)
until it is enabled again. Rotating the secret with an overlap keeps the secret it replaced
accepted for that many seconds (at most ``MAX_SECRET_OVERLAP_S``), so the merchant can switch
without losing postbacks; without one the old secret stops at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from app.core.chars import first_refused
from app.core.db import Conn
from app.core.hosts import normalise_host_pattern
from app.errors import InvalidInput, NotFound, Unauthorized

SECRET_PREFIX = "ctm_"
SIGNATURE_PREFIX = "sha256="
MERCHANT_HEADER = "x-clicktrack-merchant"
TIMESTAMP_HEADER = "x-clicktrack-timestamp"
SIGNATURE_HEADER = "x-clicktrack-signature"
MAX_HOSTS = 100  # per merchant (a CHECK in migrations/021_attribution.sql, too)
# A week: long enough for a merchant to deploy a new key, short enough that a leaked secret
# rotated "with an overlap" by mistake does not stay usable for long.
MAX_SECRET_OVERLAP_S = 7 * 24 * 3600
# The old secret's expiry is listed only while it is still accepted (a past one means nothing).
_COLUMNS = """id, name, created_at, hosts, disabled_at,
    CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END
        AS previous_secret_until"""

MAX_NAME_CHARS = 200
MerchantRef = int | str  # an id (the API) or a name (the CLI)


class MerchantError(InvalidInput):
    """A merchant cannot be created or changed as asked (the message says why)."""


class SignatureError(Unauthorized):
    """The postback is not authentic or not fresh (the message says which)."""


@dataclass(frozen=True)
class Merchant:
    """A merchant as listed, never its secret. ``previous_secret_until``: while its previous
    secret is still accepted (a rotation with an overlap), until when (UTC); else None."""

    id: int
    name: str
    created_at: datetime
    hosts: tuple[str, ...]  # empty: any host
    disabled_at: datetime | None = None
    previous_secret_until: datetime | None = None


@dataclass(frozen=True)
class PostbackSecrets:
    """What a postback from one merchant is checked against: its secrets still accepted (the
    current one first), and whether the merchant is disabled."""

    accepted: tuple[str, ...]
    disabled: bool


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
    verify_any((secret,), timestamp, signature, body, now=now, max_skew_s=max_skew_s)


def verify_any(
    accepted: Iterable[str],
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float,
    max_skew_s: int,
) -> None:
    """Raise SignatureError unless ``signature`` signs ``body`` at a fresh ``timestamp`` with
    one of the ``accepted`` secrets (during a rotation's overlap: the new one and the old).
    Every secret is compared, each in constant time, whichever matches: the time taken does
    not tell which secret, if any, was right."""
    if not timestamp or not signature:
        raise SignatureError("missing X-Clicktrack-Timestamp or X-Clicktrack-Signature header")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("X-Clicktrack-Timestamp must be unix time in whole seconds")
    if abs(now - int(timestamp)) > max_skew_s:
        raise SignatureError(
            f"X-Clicktrack-Timestamp is more than {max_skew_s} s away from the server's clock"
        )
    matched = False
    for secret in accepted:
        matched |= hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode())
    if not matched:
        raise SignatureError("the signature does not match the body")


def _merchant(row: asyncpg.Record) -> Merchant:
    return Merchant(
        row["id"],
        row["name"],
        row["created_at"],
        tuple(row["hosts"]),
        row["disabled_at"],
        row["previous_secret_until"],
    )


def _where(ref: MerchantRef) -> tuple[str, int | str]:
    """The condition (on $1) that picks the merchant ``ref`` names, and its value."""
    return ("id = $1", ref) if isinstance(ref, int) else ("name = $1", ref.strip())


def _missing(ref: MerchantRef) -> NotFound:
    if isinstance(ref, int):
        return NotFound(f"merchant {ref} does not exist")
    return NotFound(f"no merchant named {ref.strip()!r}")


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
    if not name:
        raise MerchantError("name must not be blank")
    if len(name) > MAX_NAME_CHARS:
        raise MerchantError(f"name must be at most {MAX_NAME_CHARS} characters")
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


async def get_merchant(conn: Conn, ref: MerchantRef) -> Merchant | None:
    """The merchant of that id or name, or None."""
    where, value = _where(ref)
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM merchants WHERE {where}", value)
    return None if row is None else _merchant(row)


async def rotate_secret(
    conn: Conn, ref: MerchantRef, *, overlap_s: int = 0
) -> tuple[Merchant, str]:
    """Give a merchant a new secret; return it and the secret (to be shown once). The old
    secret stops working at once (``overlap_s`` 0), or is still accepted for ``overlap_s``
    seconds (at most ``MAX_SECRET_OVERLAP_S``); a secret kept from an earlier rotation is
    dropped either way. Raises ``MerchantError`` for an overlap out of bounds, ``NotFound``."""
    if not 0 <= overlap_s <= MAX_SECRET_OVERLAP_S:
        raise MerchantError(
            f"must be 0 to {MAX_SECRET_OVERLAP_S} seconds (7 days)", field="overlap_seconds"
        )
    where, value = _where(ref)
    secret = new_secret()
    # On the right of SET, ``secret`` is the row's old value: the one being replaced.
    row = await conn.fetchrow(
        f"""UPDATE merchants
               SET previous_secret = CASE WHEN $3 > 0 THEN secret END,
                   previous_secret_expires_at = CASE WHEN $3 > 0 THEN now() + $4::interval END,
                   secret = $2
             WHERE {where} RETURNING {_COLUMNS}""",
        value,
        secret,
        overlap_s,
        timedelta(seconds=overlap_s),
    )
    if row is None:
        raise _missing(ref)
    return _merchant(row), secret


async def set_hosts(conn: Conn, ref: MerchantRef, hosts: Iterable[str]) -> Merchant:
    """Replace the hosts a merchant owns (none: any host). Orders already decided stay as
    they are; the next ones are judged by the new hosts. Raises ``MerchantError`` for a
    pattern that is not a host, ``NotFound``."""
    patterns = normalise_hosts(hosts)
    where, value = _where(ref)
    row = await conn.fetchrow(
        f"UPDATE merchants SET hosts = $2 WHERE {where} RETURNING {_COLUMNS}",
        value,
        list(patterns),
    )
    if row is None:
        raise _missing(ref)
    return _merchant(row)


async def set_disabled(conn: Conn, ref: MerchantRef, disabled: bool) -> Merchant:
    """Disable a merchant (its postbacks are refused from now on; its stored orders stay as
    they are) or enable it again. Idempotent: a disabled merchant keeps its first
    ``disabled_at``. Raises ``NotFound``."""
    where, value = _where(ref)
    row = await conn.fetchrow(
        f"""UPDATE merchants
               SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END
             WHERE {where} RETURNING {_COLUMNS}""",
        value,
        disabled,
    )
    if row is None:
        raise _missing(ref)
    return _merchant(row)


async def list_merchants(conn: Conn) -> list[Merchant]:
    """Every merchant, by id."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM merchants ORDER BY id")
    return [_merchant(r) for r in rows]


async def postback_secrets(conn: Conn, merchant_id: int) -> PostbackSecrets | None:
    """The secrets a postback of merchant ``merchant_id`` may be signed with now (its
    previous one only until its overlap ends), or None for no such merchant."""
    row = await conn.fetchrow(
        """SELECT secret, disabled_at IS NOT NULL AS disabled,
                  CASE WHEN previous_secret_expires_at > now() THEN previous_secret END
                      AS previous
             FROM merchants WHERE id = $1""",
        merchant_id,
    )
    if row is None:
        return None
    accepted = (row["secret"],) if row["previous"] is None else (row["secret"], row["previous"])
    return PostbackSecrets(accepted, row["disabled"])
