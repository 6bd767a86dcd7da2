"""Dashboard sign-in sessions and CSRF tokens.

Signing in with a publisher's API key creates a session: a random id (256 bits) whose record
in Redis holds the key's *id* (never the key), the publisher and the session's CSRF token,
with an expiry. The browser keeps ``<id>.<HMAC>`` in an HttpOnly, SameSite=Lax cookie
(``Secure`` per ``CLICKTRACK_COOKIE_SECURE``), scoped to ``/dashboard``. Every request checks
the signature, the record, and that the key is still valid: revoking the key ends its
sessions.

Forms that change something (sign in, sign out) carry a CSRF token besides SameSite: sign-out
the session's token; sign-in, before any session exists, a signed token that is also in a
short-lived cookie (double submit).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from app.core.db import Conn
from app.core.keys import RedisKeys

COOKIE = "ct_dash"
LOGIN_CSRF_COOKIE = "ct_dash_login"
PATH = "/dashboard"
SESSION_TTL_S = 8 * 3600
LOGIN_CSRF_TTL_S = 3600


def _mac(secret: bytes, purpose: str, value: str) -> str:
    digest = hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _equal(a: str, b: str) -> bool:
    """Constant-time comparison of any two strings (ASCII or not)."""
    return hmac.compare_digest(a.encode(), b.encode())


def _signed(secret: bytes, purpose: str, value: str) -> str:
    return f"{value}.{_mac(secret, purpose, value)}"


def _unsigned(secret: bytes, purpose: str, token: str | None) -> str | None:
    """The value of a token signed for ``purpose``, or None if it is not one."""
    if not token or len(token) > 200:
        return None
    value, _, mac = token.partition(".")
    if not value or not _equal(mac, _mac(secret, purpose, value)):
        return None
    return value


@dataclass(frozen=True)
class DashboardSession:
    session_id: str
    key_id: int
    publisher_id: int
    csrf: str


class Sessions:
    def __init__(self, redis: aioredis.Redis, keys: RedisKeys, secret: bytes) -> None:
        self._redis = redis
        self._keys = keys
        self._secret = secret

    async def create(self, key_id: int, publisher_id: int) -> tuple[DashboardSession, str]:
        """A new session; returns it and the cookie value that names it."""
        session = DashboardSession(
            secrets.token_urlsafe(32), key_id, publisher_id, secrets.token_urlsafe(32)
        )
        record = {"key_id": key_id, "publisher_id": publisher_id, "csrf": session.csrf}
        await self._redis.set(
            self._keys.dashboard_session(session.session_id),
            orjson.dumps(record),
            ex=SESSION_TTL_S,
        )
        return session, _signed(self._secret, "session", session.session_id)

    async def find(self, conn: Conn, cookie: str | None) -> DashboardSession | None:
        """The session a cookie names, if it is signed, exists, and its key still works."""
        session_id = _unsigned(self._secret, "session", cookie)
        if session_id is None:
            return None
        raw = await self._redis.get(self._keys.dashboard_session(session_id))
        if raw is None:
            return None
        record = orjson.loads(raw)
        valid = await conn.fetchval(
            """SELECT true FROM api_keys WHERE id = $1 AND publisher_id = $2
                 AND role = 'publisher' AND revoked_at IS NULL
                 AND (expires_at IS NULL OR expires_at > now())""",
            record["key_id"],
            record["publisher_id"],
        )
        if not valid:
            await self.delete(session_id)
            return None
        return DashboardSession(
            session_id, record["key_id"], record["publisher_id"], record["csrf"]
        )

    async def delete(self, session_id: str) -> None:
        await self._redis.delete(self._keys.dashboard_session(session_id))

    def login_token(self) -> str:
        """A sign-in form's CSRF token (also set as a cookie)."""
        return _signed(self._secret, "login", secrets.token_urlsafe(24))

    def login_token_matches(self, form_token: str | None, cookie_token: str | None) -> bool:
        if _unsigned(self._secret, "login", cookie_token) is None or form_token is None:
            return False
        return _equal(form_token, cookie_token or "")


def same_token(expected: str, given: str | None) -> bool:
    return given is not None and _equal(expected, given)
