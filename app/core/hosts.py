"""Host names and host patterns in the one ASCII form they are compared in. Pure.

Three concepts compare hosts: a link's destination against the allow-list
(``app.links``), a merchant's own hosts (``app.accounts.merchants``), and an order's click
against the hosts of the merchant reporting it (``app.orders.attribution``). They share
this module, so a host written in Unicode and in punycode are one host everywhere.

A host is IDNA-encoded (UTS #46 mapping, IDNA 2008 labels: RFC 5890/5891), lower case,
without a trailing dot; an IP literal is in its canonical form, without brackets. A pattern
is such a host (``shop.example.com``: that host only) or ``*.`` and a domain name
(``*.example.com``: any host below it, not itself).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote

import idna

# RFC 1035 §2.3.4: 253 characters without the trailing dot.
MAX_HOST_LENGTH = 253
# A last label of digits (or 0x... hex) makes WHATWG clients parse the host as IPv4.
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
WILDCARD = "*."


def normalise_host(host: str) -> str:
    """``host`` (Unicode or ASCII, any case, percent-escapes allowed, an IPv6 literal with or
    without brackets) in its ASCII form. Raises ``ValueError`` saying why it can never
    resolve."""
    if "%" in host:  # decoded as WHATWG clients do: "%2F" becomes "/", refused below
        try:
            host = unquote(host, errors="strict")
        except UnicodeDecodeError:
            raise ValueError(f"host {host!r} holds escapes that are not UTF-8") from None
    host = host.removesuffix(".")
    if ":" in host:  # only an IPv6 literal holds one; a zone id ("%eth0") is local: refused
        try:
            address = ipaddress.IPv6Address(host.removeprefix("[").removesuffix("]"))
        except ValueError:
            address = None
        if address is None or address.scope_id:
            raise ValueError(f"host {host!r} is not a valid IPv6 address")
        return str(address)
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    # The usual faults named in plain words before IDNA's own messages.
    bad = next((c for c in host if c.isascii() and not (c.isalnum() or c in "-.")), None)
    if bad is not None:
        raise ValueError(f"host {host!r} is not a valid domain name: it holds {bad!r}")
    if not host or ".." in host or host.startswith("."):
        raise ValueError(f"host {host!r} is not a valid domain name: it has an empty label")
    try:
        ascii_host = idna.encode(host, uts46=True, std3_rules=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"host {host!r} is not a valid domain name ({exc})") from None
    if len(ascii_host) > MAX_HOST_LENGTH:
        raise ValueError(f"host is longer than {MAX_HOST_LENGTH} characters")
    if _NUMERIC_LABEL.match(ascii_host.rpartition(".")[2]):
        raise ValueError(f"host {host!r} is neither a domain name nor an IPv4 address")
    return ascii_host


def normalise_host_pattern(pattern: str) -> str:
    """``pattern`` (``shop.example.com`` or ``*.example.com``, Unicode or ASCII, any case) in
    the form ``host_allowed`` compares. Raises ``ValueError`` saying what is wrong."""
    text = pattern.strip()
    wildcard, bare = (WILDCARD, text[2:]) if text.startswith(WILDCARD) else ("", text)
    if "*" in bare:
        raise ValueError(f"host pattern {pattern!r}: a '*' may only open it, as in *.example.com")
    if "/" in bare or bare.count(":") == 1:  # an IPv6 literal holds two or more
        raise ValueError(
            f"host pattern {pattern!r}: a host name alone (shop.example.com), without a "
            "scheme, port or path"
        )
    host = normalise_host(bare)
    if wildcard and (":" in host or _is_ipv4(host)):
        raise ValueError(f"host pattern {pattern!r}: '*.' needs a domain name, not an address")
    return wildcard + host


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """``example.com`` matches itself; ``*.example.com`` matches any subdomain, not itself.
    Both sides in ASCII form (``normalise_host``, ``normalise_host_pattern``), so a host
    written in Unicode and in punycode are one host."""
    for pattern in patterns:
        if pattern.startswith(WILDCARD):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False
