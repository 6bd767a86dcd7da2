"""A webhook's signature: what receivers check (docs/postbacks.md has the recipe).

The same scheme as the merchants' postbacks (``app/accounts/merchants.py``)::

    X-Clicktrack-Timestamp: <unix time of this attempt, whole seconds>
    X-Clicktrack-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>
    X-Clicktrack-Event-Id:  <the event's UUID: the same on every retry>
    X-Clicktrack-Event:     <the event's type>

Each attempt is signed anew at its own time; the body and event id stay the same.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_PREFIX = "ctw_"
SIGNATURE_PREFIX = "sha256="
TIMESTAMP_HEADER = "X-Clicktrack-Timestamp"
SIGNATURE_HEADER = "X-Clicktrack-Signature"
EVENT_ID_HEADER = "X-Clicktrack-Event-Id"
EVENT_HEADER = "X-Clicktrack-Event"


def new_secret() -> str:
    """A webhook's signing secret: ``ctw_`` + 256 random bits."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def headers(secret: str, timestamp: int, body: bytes, event: str, event_id: str) -> dict[str, str]:
    """The headers of one webhook attempt."""
    stamp = str(timestamp)
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(secret, stamp, body),
        EVENT_ID_HEADER: event_id,
        EVENT_HEADER: event,
    }


def valid(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` signs ``body`` at ``timestamp`` (what a receiver checks)."""
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode())
