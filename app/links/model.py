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
from typing import Literal
from unicodedata import category

import idna

from app.core.hosts import host_allowed as host_allowed
from app.core.years import YEARS_WORDS, in_years
from app.errors import Conflict, InvalidInput
from app.links.urls import normalise_destination

# The most characters of a caller's text a message repeats (``echoed``).
ECHO_LIMIT = 64


def echoed(text: object, limit: int = ECHO_LIMIT) -> str:
    """A caller's text as a message repeats it: at most ``limit`` characters, then "…". An
    order id, a code or a host may be kilobytes long: an answer names it, it does not mirror
    it back whole. (It lives here, the lowest package whose messages echo input: the API's
    error module and the links' rules both use it.)"""
    shown = str(text)
    return shown if len(shown) <= limit else shown[:limit] + "…"


CODE_PATTERN = r"^[A-Za-z0-9]{1,32}$"
_CODE = re.compile(CODE_PATTERN)
_CODE_ALPHABET = string.ascii_letters + string.digits
RANDOM_CODE_LENGTH = 9


class LinkStatus(StrEnum):
    """``active`` redirects; ``disabled`` answers 404 (as if it never existed); ``archived``
    answers 410 like an expired link and leaves the default link list, its clicks and
    reports kept. Any status can be set back to ``active``."""

    active = "active"
    disabled = "disabled"
    archived = "archived"


class LinkError(InvalidInput):
    """A link cannot be stored as asked (the message says why)."""


class CodeTaken(Conflict, LinkError):
    """A custom code another link already has: a conflict (409), and still a LinkError."""


RuleKind = Literal["country", "device", "os", "language", "param"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One of a link's rules (issue 19): when the click's ``when`` fact is one of
    ``values``, the click goes to ``destination`` instead of the link's. ``values`` are in
    their normal form (``app.links.rules``: countries upper case, languages and device types
    lower case, OS families as written), in the order given; ``name`` is the query
    parameter's name for ``param`` rules, None for the others."""

    when: RuleKind
    values: tuple[str, ...]
    destination: str
    name: str | None = None


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
    # In order: the first that matches a click chooses its destination (app.links.rules).
    rules: tuple[Rule, ...] = ()


EXPIRY_IN_THE_PAST = (
    "must be in the future: to stop a link now, set its status to disabled (or archived)"
)


def check_expiry(expires_at: datetime | None, now: datetime) -> None:
    """Refuse an expiry at or before ``now`` (a link dead from birth, or a change that would
    kill it silently): stopping a link is its status's job, which says so in the list.
    Raises ``LinkError`` (field ``expires_at``). The store does not check it: a test or an
    import may record a link that has already expired."""
    if expires_at is not None and expires_at <= now:
        raise LinkError(EXPIRY_IN_THE_PAST, field="expires_at")
    if expires_at is not None and not in_years(expires_at):
        raise LinkError(YEARS_WORDS, field="expires_at")


def is_valid_code(code: str) -> bool:
    return _CODE.fullmatch(code) is not None


# A code, then a short tail that no code can hold: a slash, or punctuation picked up from the
# text around a pasted link ("abcD12345.", "abcD12345)", "abcD12345/?af=1").
_CODE_AND_TAIL = re.compile(r"([A-Za-z0-9]{1,32})([^A-Za-z0-9]{1,8})")
# Unicode general categories a tail may hold: punctuation, symbols, spaces. Not letters or
# digits of any script, not control or invisible characters.
_TAIL_CATEGORIES = frozenset(
    ("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs")
)


def code_in_path(segment: str) -> str | None:
    """The code a path segment after ``/e/`` names, or None (a 404). The code itself, or the
    code followed by up to 8 punctuation, symbol or space characters (Unicode categories P*,
    S*, Zs): codes are ``[A-Za-z0-9]{1,32}``, so such a tail can never select another link,
    and the click is followed rather than lost. ``abc/x``, ``abcé`` and ``abc`` + a control
    or invisible character name nothing."""
    if _CODE.fullmatch(segment):
        return segment
    near_miss = _CODE_AND_TAIL.fullmatch(segment)
    if near_miss is None or any(category(c) not in _TAIL_CATEGORIES for c in near_miss[2]):
        return None
    return near_miss[1]


def random_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(RANDOM_CODE_LENGTH))


def validate_destination(url: str, allowed_hosts: tuple[str, ...]) -> str:
    """Return the destination as stored: normalised to pure ASCII, at most
    ``MAX_DESTINATION_BYTES`` (``app.links.urls.normalise_destination``), on a host of the
    allow-list. Raises LinkError (``field="destination"``) saying what is wrong."""
    try:
        destination = normalise_destination(url)
    except ValueError as exc:
        # The field is named once, by the prefix ``destination: `` the answer puts first.
        raise LinkError(str(exc).removeprefix("destination "), field="destination") from None
    if not host_allowed(destination.host, allowed_hosts):
        shown = repr(echoed(destination.host))
        if "xn--" in destination.host:  # say which host the publisher wrote, too
            shown += f" ({echoed(idna.decode(destination.host))})"
        raise LinkError(f"host {shown} is not allowed", field="destination")
    return destination.url
