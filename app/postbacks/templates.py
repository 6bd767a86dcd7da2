"""Postback URL templates: their macros, the rules a template must pass when it is written,
and filling one in. Pure.

A template is an ``http`` or ``https`` URL with macros in its path or query, each written
``{name}``: ``https://track.example.com/pb?cid={click_id}&sum={amount}&s={status}``. When it
is sent, each macro is replaced by its value percent-encoded (``quote(value, safe="")``: a
value can never add a parameter nor a path segment); a value the event has not (``{af}`` of
an order without one) becomes empty.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from app.core.chars import first_refused
from app.core.hosts import normalise_host
from app.errors import InvalidInput

MAX_TEMPLATE_LENGTH = 2048

# name -> what it is, for the docs and the error messages.
MACROS: dict[str, str] = {
    "click_id": "the click id the order came from",
    "af": "the click's sub-affiliate tracking id",
    "cn": "the click's campaign id",
    "cv": "the click's creative id",
    "dp": "the click's dynamic parameter",
    "order_id": "the merchant's order id",
    "amount": "the order amount (US dollars, two decimals)",
    "currency": "the order's currency (USD)",
    "commission": "the commission (US dollars): credited or charged back by this event, else "
    "what the order holds in the ledger; empty before any",
    "status": "the order status",
    "event": "the event's type, such as order_completed",
    "event_id": "the event's id (a UUID): the same on every retry of one event",
    "time": "when the event happened (ISO 8601, UTC)",
    "timestamp": "when the event happened (unix time, seconds)",
}

_MACRO = re.compile(r"\{([^{}]*)\}")


class TemplateError(InvalidInput):
    """A postback URL template breaks a rule (the message says which, in plain words)."""


def _fail(message: str) -> TemplateError:
    return TemplateError(message, field="url")


def _macros(template: str) -> list[str]:
    names = _MACRO.findall(template)
    for name in names:
        if name not in MACROS:
            known = ", ".join("{" + m + "}" for m in MACROS)
            raise _fail(f"unknown macro {{{name}}}; the macros are {known}")
    if "{" in _MACRO.sub("", template) or "}" in _MACRO.sub("", template):
        raise _fail("a '{' or '}' that does not enclose a macro: write macros as {name}")
    return names


def check_url(template: str, *, macros_allowed: bool) -> str:
    """``template`` when it is a URL template clicktrack may call (a webhook's URL takes no
    macros). Raises ``TemplateError`` saying what is wrong."""
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise _fail(f"must be at most {MAX_TEMPLATE_LENGTH} characters")
    refused = first_refused(template) or next(
        (f"U+{ord(c):04X}" for c in template if c.isspace()), None
    )
    if refused is not None:
        raise _fail(f"must not contain spaces, control or invisible characters ({refused})")
    names = _macros(template)
    if names and not macros_allowed:
        raise _fail("a webhook URL takes no macros: the event is in the JSON body")
    try:
        parts = urlsplit(template)
        port = parts.port
    except ValueError as exc:
        raise _fail(f"not a URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _fail("must start with https:// or http://")
    if _MACRO.search(parts.netloc):
        raise _fail("macros go in the path or the query, not in the host")
    if "@" in parts.netloc:
        raise _fail("must not carry a user name or password")
    if parts.fragment:
        raise _fail("must not have a fragment (#...): it is never sent")
    if not parts.hostname:
        raise _fail("has no host")
    try:
        normalise_host(parts.hostname)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if port == 0:
        raise _fail("port 0 is not a port")
    return template


def fill(template: str, values: Mapping[str, str | None]) -> str:
    """``template`` with each macro replaced by its value, percent-encoded (none: empty)."""

    def value(match: re.Match[str]) -> str:
        return quote(values.get(match.group(1)) or "", safe="")

    return _MACRO.sub(value, template)
