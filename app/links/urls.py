"""Destination URLs in the one form every HTTP client reads: pure ASCII, normalised once when
a link is written.

The host is IDNA-encoded (UTS #46 mapping, IDNA 2008 labels: RFC 5890/5891), so the
``Location`` header carries ``xn--bcher-kva.example.com`` and never ``b%C3%BCcher...``,
which only WHATWG-style clients decode; an IP literal is written in its canonical form.
Path, query and fragment are percent-encoded (RFC 3986 §2.1, UTF-8) where they hold a
character a URI cannot, and otherwise left exactly as written: existing escapes and the
order and spelling of parameters are the merchant's. Hosts that can never resolve are
refused: a percent-escape decoding to ``/``, an empty label, a character outside
letters-digits-hyphen, a last label of digits that is not an IPv4 address.

The same module names query parameters as a server would read them (``param_name``), so
that comparing names never depends on how they were escaped.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import quote, unquote_plus, urlsplit

# The host's normal form is shared with the merchants' hosts and attribution: app.core.hosts.
from app.core.hosts import normalise_host as normalise_host

# Bytes of the stored destination (all ASCII once normalised): the Location sent adds only
# the click-id parameter to it (``app.edge.linkcache``).
MAX_DESTINATION_BYTES = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
# Control characters, whitespace and backslashes have no business in a destination URL; some
# browsers "repair" them into a different host.
_FORBIDDEN_IN_URL = re.compile(r"[\x00-\x20\x7f\\]")
# RFC 3986 §3.3-3.5: what a path, a query and a fragment may hold besides unreserved
# characters (which quote() always keeps); "%" is kept so existing escapes stay as written.
_PATH_SAFE = "!$&'()*+,;=:@/%"
_QUERY_SAFE = _PATH_SAFE + "?"


class Destination(NamedTuple):
    """A normalised destination: ``url`` pure ASCII, ``host`` as the allow-list sees it
    (IDNA A-labels, lower case, no trailing dot; or an IP literal without brackets)."""

    url: str
    host: str


def normalise_destination(url: str) -> Destination:
    """``url`` as stored and sent: scheme and host lower case, host IDNA-encoded, the
    scheme's default port dropped, an empty path made ``/``, non-ASCII and characters a URI
    cannot hold percent-encoded in path, query and fragment. Raises ``ValueError`` saying
    what is wrong: not http(s), no host or an impossible one, user credentials, a bad port,
    control characters or whitespace, more than ``MAX_DESTINATION_BYTES`` once encoded."""
    if len(url) > MAX_DESTINATION_BYTES:  # never shorter once encoded: refuse before work
        raise ValueError(f"destination longer than {MAX_DESTINATION_BYTES} bytes")
    if _FORBIDDEN_IN_URL.search(url):
        raise ValueError("destination contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"destination is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError("destination must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("destination must not contain user credentials")
    host, netloc = _authority(parts.hostname, port, DEFAULT_PORTS[scheme])
    normalised = f"{scheme}://{netloc}{quote(parts.path, safe=_PATH_SAFE) or '/'}"
    before_fragment, has_fragment, _ = url.partition("#")
    if "?" in before_fragment:  # an empty query ("x?") is kept as written, too
        normalised += "?" + quote(parts.query, safe=_QUERY_SAFE)
    if has_fragment:
        normalised += "#" + quote(parts.fragment, safe=_QUERY_SAFE)
    if len(normalised) > MAX_DESTINATION_BYTES:
        raise ValueError(
            f"destination longer than {MAX_DESTINATION_BYTES} bytes once encoded as ASCII"
        )
    return Destination(normalised, host)


def _authority(hostname: str | None, port: int | None, default_port: int) -> tuple[str, str]:
    """(host, netloc): the normalised host, and it with brackets and a non-default port."""
    if not hostname:
        raise ValueError("destination has no host")
    try:
        host = normalise_host(hostname)
    except ValueError as exc:
        raise ValueError(f"destination {exc}") from None
    if port == 0:
        raise ValueError("destination port must be between 1 and 65535")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != default_port:
        netloc += f":{port}"
    return host, netloc


def param_name(raw: str) -> str:
    """A query parameter's name as a server reads it: ``+`` is a space, escapes decoded
    (UTF-8, undecodable bytes replaced), per the form-urlencoded rules (WHATWG URL §5.1)."""
    return unquote_plus(raw) if "%" in raw or "+" in raw else raw
