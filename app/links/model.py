"""Links: a publisher's short code pointing at a destination on an allowed host.

The rules alone, no storage: codes, destinations, the allow-list. ``app.links.store`` keeps
links in Postgres (the source of truth); the redirect reads them through its own cache
(``app.edge.linkcache``) and the Redis mirror (``app.links.mirror``).
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from app.errors import Conflict, InvalidInput

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


class LinkError(InvalidInput):
    """A link cannot be stored as asked (the message says why)."""


class CodeTaken(Conflict, LinkError):
    """A custom code another link already has: a conflict (409), and still a LinkError."""


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
    """Return the destination as stored, or raise LinkError (``field="destination"``) saying
    what is wrong."""
    if len(url) > MAX_DESTINATION_LENGTH:
        raise LinkError(
            f"destination longer than {MAX_DESTINATION_LENGTH} characters", field="destination"
        )
    if _FORBIDDEN_IN_URL.search(url):
        raise LinkError(
            "destination contains whitespace, control characters or backslashes",
            field="destination",
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise LinkError(f"destination is not a valid URL: {exc}", field="destination") from None
    if parts.scheme not in ("http", "https"):
        raise LinkError("destination must be an http or https URL", field="destination")
    if not host:
        raise LinkError("destination has no host", field="destination")
    if parts.username is not None or parts.password is not None:
        raise LinkError("destination must not contain user credentials", field="destination")
    if not host_allowed(host, allowed_hosts):
        raise LinkError(f"destination host {host!r} is not allowed", field="destination")
    return url
