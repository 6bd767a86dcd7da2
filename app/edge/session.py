"""The attribution session cookie: an opaque random id and an HMAC over it.

A value whose signature does not verify is ignored and a new session starts, so a visitor
cannot pick or forge a session id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SIGNATURE_BYTES = 16


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class SessionCookie:
    def __init__(
        self,
        secret: bytes,
        *,
        name: str,
        secure: bool,
        domain: str | None,
        max_age: int | None,
    ) -> None:
        self._secret = secret
        self.name = name
        attributes = "; Path=/; HttpOnly; SameSite=Lax"
        if secure:
            attributes += "; Secure"
        if domain:
            attributes += f"; Domain={domain}"
        if max_age is not None:
            attributes += f"; Max-Age={max_age}"
        self._attributes = attributes

    def sign(self, session_id: str) -> str:
        mac = hmac.digest(self._secret, session_id.encode("ascii"), hashlib.sha256)
        return f"{session_id}.{_b64(mac[:SIGNATURE_BYTES])}"

    def verify(self, value: str) -> str | None:
        """The session id of a signed value, or None when it is absent, malformed or forged."""
        session_id, dot, _ = value.rpartition(".")
        if not dot or len(value) > 100 or not value.isascii():
            return None
        return session_id if hmac.compare_digest(self.sign(session_id), value) else None

    def new_session_id(self) -> str:
        return _b64(secrets.token_bytes(16))

    def from_cookie_header(self, header: str | None) -> str | None:
        """Find our cookie in a ``Cookie:`` header; its signed value if it verifies."""
        if not header:
            return None
        prefix = self.name + "="
        for part in header.split(";"):
            part = part.strip()
            if part.startswith(prefix):
                value = part[len(prefix) :]
                return value if self.verify(value) is not None else None
        return None

    @staticmethod
    def session_id(signed_value: str) -> str:
        return signed_value.rpartition(".")[0]

    def set_cookie_header(self, signed_value: str) -> bytes:
        """The Set-Cookie value for a signed session (``sign()``, or a verified cookie)."""
        return f"{self.name}={signed_value}{self._attributes}".encode("ascii")
