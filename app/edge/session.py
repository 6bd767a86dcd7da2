"""The attribution session cookie: an opaque random id and a MAC over it.

A value whose MAC does not verify is ignored and a new session starts, so a visitor cannot
pick or forge a session id. The MAC is keyed BLAKE2b (RFC 7693's MAC mode): one hash call,
a third of what HMAC-SHA256 costs, and this runs on every redirect.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os

# 15 bytes (120 bits) are 20 base64 characters with no padding, so a block of random bytes
# encodes in one call and slices into ids. 120 random bits, like a UUIDv4's 122.
ID_BYTES = 15
SIGNATURE_BYTES = 15
_ID_CHARS = ID_BYTES * 4 // 3
_IDS_PER_DRAW = 256
_MAX_VALUE_LENGTH = 100
_URL_SAFE = bytes.maketrans(b"+/", b"-_")

_fresh_ids: list[str] = []
# A forked child must not hand out the ids its parent drew.
os.register_at_fork(after_in_child=_fresh_ids.clear)


def _b64(raw: bytes) -> str:
    """URL-safe base64 without padding (for lengths that are multiples of 3, none is due)."""
    return binascii.b2a_base64(raw, newline=False).translate(_URL_SAFE).rstrip(b"=").decode()


def _starts_a_cookie(header: str, position: int) -> bool:
    """Whether a cookie starts there: "xct_sid=" or "a=b ct_sid=" hold no cookie of ours."""
    before = header[:position].rstrip(" \t")
    return not before or before[-1] == ";"


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
        # A key of its own, derived from the secret: other uses of the secret (IP hashing,
        # say) never produce a value that verifies here.
        key = hashlib.blake2b(secret, digest_size=32, person=b"ct-session").digest()
        self._mac = hashlib.blake2b(key=key, digest_size=SIGNATURE_BYTES)
        self.name = name
        self._prefix = name + "="
        attributes = "; Path=/; HttpOnly; SameSite=Lax"
        if secure:
            attributes += "; Secure"
        if domain:
            attributes += f"; Domain={domain}"
        if max_age is not None:
            attributes += f"; Max-Age={max_age}"
        self._set_cookie_head = self._prefix.encode("ascii")
        self._set_cookie_tail = attributes.encode("ascii")

    def sign(self, session_id: str) -> str:
        mac = self._mac.copy()  # the keyed state, prepared once
        mac.update(session_id.encode("ascii"))
        return f"{session_id}.{_b64(mac.digest())}"

    def verify(self, value: str) -> str | None:
        """The session id of a signed value, or None when it is absent, malformed or forged."""
        session_id, dot, _ = value.rpartition(".")
        if not dot or len(value) > _MAX_VALUE_LENGTH or not value.isascii():
            return None
        return session_id if hmac.compare_digest(self.sign(session_id), value) else None

    @staticmethod
    def new_session_id() -> str:
        if not _fresh_ids:
            # One read of the OS's CSPRNG (what secrets uses) for many sessions.
            text = _b64(os.urandom(ID_BYTES * _IDS_PER_DRAW))
            _fresh_ids.extend(text[n : n + _ID_CHARS] for n in range(0, len(text), _ID_CHARS))
        return _fresh_ids.pop()

    def from_cookie_header(self, header: str | None) -> str | None:
        """Find our cookie in a ``Cookie:`` header (the first one, if repeated); its signed
        value if it verifies."""
        if not header:
            return None
        prefix = self._prefix
        start = header.find(prefix)
        while start >= 0 and not _starts_a_cookie(header, start):
            start = header.find(prefix, start + 1)
        if start < 0:
            return None
        start += len(prefix)
        end = header.find(";", start)
        value = (header[start:] if end < 0 else header[start:end]).strip()
        return value if self.verify(value) is not None else None

    @staticmethod
    def session_id(signed_value: str) -> str:
        return signed_value.rpartition(".")[0]

    def set_cookie_header(self, signed_value: str) -> bytes:
        """The Set-Cookie value for a signed session (``sign()``, or a verified cookie)."""
        return self._set_cookie_head + signed_value.encode("ascii") + self._set_cookie_tail
