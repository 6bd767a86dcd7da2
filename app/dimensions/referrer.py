"""Referer header -> the referring page's host. Pure.

The host is in the one ASCII form every host of clicktrack is compared in
(``app.core.hosts.normalise_host``: IDNA 2008 / UTS #46, lower case, no trailing dot, an IP
literal canonical and without brackets), so ``https://BÜCHER.example/`` and
``https://xn--bcher-kva.example/`` are one referrer. The host is kept whole
(``www.google.com`` and ``google.com`` stay apart): folding them is a report's choice.

Only ``http`` and ``https`` referers count: browsers send no other scheme to a web server
except Android's ``android-app://<package>/``, whose "host" is an app's package name, not a
site, and ``about:``/``data:`` noise; those are ``None`` like an empty or invalid value.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from app.core.hosts import normalise_host

_WEB_SCHEMES = frozenset({"http", "https"})


def referrer_host(referer: str) -> str | None:
    """``referer`` (the header's text, any) -> its host in ASCII form, or ``None`` when it is
    empty, not an http(s) URL, or its host is not a valid domain name or address."""
    try:
        parts = urlsplit(referer.strip())
        host = parts.hostname  # without user info and port, lower case, brackets removed
    except ValueError:  # an unbalanced "[" or a bracketed host that is not IPv6
        return None
    if parts.scheme.lower() not in _WEB_SCHEMES or not host:
        return None
    try:
        return normalise_host(host)
    except ValueError:
        return None
