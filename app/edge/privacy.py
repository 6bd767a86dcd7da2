"""The client's address: read and checked once, then what of it is kept and what it is
judged by.

- ``normalise_address``: the text the server gives as the client (the socket peer, or with
  ``CLICKTRACK_FORWARDED_ALLOW_IPS`` whatever ``X-Forwarded-For`` says: any string) as one
  canonical address, or None when it is not an address. Every use below starts from it.
- ``IpMasker.mask``: what is stored with the click (``CLICKTRACK_IP_MODE``): all of it, its
  network (IPv4 /24, IPv6 /48), or a keyed hash.
- ``IpMasker.window_key``: what the per-IP duplicate rule judges (``ip_clicks_per_minute``
  clicks per IP and link per minute, ``app/flusher/quality.py``): a keyed hash of the *full*
  address whatever the mode, so that the visitors of one network (a carrier's NAT pool, a
  campus) are not one "IP". It travels in the click record (``ip_key``) to the flusher,
  lives in Redis for the rule's window only and is never stored in Postgres.
- ``IpMasker.country``: in the modes that do not keep the full address (truncate, hash),
  the country of the full address (the embedded registry data, ``iptocc``: ~0.1 us), so
  that the flusher, which sees only what is kept, can store the click's country (issue 19;
  record minor 1.2, ``cc``). In full mode None: the flusher resolves it from ``ip``, with
  the operator's database when there is one.

This runs for every redirect: addresses are parsed and printed by the C library
(``inet_pton``, ``inet_ntop``: well under a microsecond) rather than by ``ipaddress`` (4 to
12 us an address); the result is ``ipaddress``'s, which the tests check property by
property, and which is used instead where the C library prints otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton

from app.dimensions.country import registry_country
from app.settings import IpMode

TRUNCATE_V4_PREFIX = 24
TRUNCATE_V6_PREFIX = 48
# Characters: the longest address text is 45 ("0000:...:ffff:255.255.255.255"), a zone id
# an interface name (at most 15 on Linux), brackets 2. Anything longer is not an address.
MAX_ADDRESS_TEXT = 64
# Bytes of the window key's digest (hex: twice as many characters).
WINDOW_KEY_BYTES = 16
_V4_HOST_BITS = 32 - TRUNCATE_V4_PREFIX
_V6_HOST_BITS = 128 - TRUNCATE_V6_PREFIX
_MAPPED_PREFIX = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96 (RFC 4291 2.5.5.2)
# An IPv4 address as ipaddress reads one, which is also its canonical text: four decimal
# numbers of 0-255, ASCII digits, no leading zero.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


def _prints_like_ipaddress() -> bool:
    """Whether this C library prints IPv6 addresses as ``ipaddress`` does (RFC 5952: lower
    case, the first longest run of two or more zero groups compressed). glibc and musl do;
    the dotted forms (``::1.2.3.4``) are handled apart (``_v6_text``)."""
    samples = (
        "::", "::1", "1::", "2001:db8::1", "2001:db8:0:1:1:1:1:1", "2001:0:0:1::1",
        "2001:db8:0:0:1:0:0:1", "fe80::abcd:ef01", "1:2:3:4:5:6:7:0", "0:1:2:3:4:5:6:7",
    )  # fmt: skip
    for sample in samples:
        packed = ipaddress.IPv6Address(sample).packed
        if inet_ntop(AF_INET6, packed) != str(ipaddress.IPv6Address(packed)):
            return False
    return True


_NTOP_IS_CANONICAL = _prints_like_ipaddress()


def _v6_text(packed: bytes) -> str:
    """The canonical text of an IPv6 address (16 bytes), an IPv4-mapped one's being its IPv4."""
    if packed[:12] == _MAPPED_PREFIX:
        return inet_ntop(AF_INET, packed[12:])
    if _NTOP_IS_CANONICAL:
        text = inet_ntop(AF_INET6, packed)
        if "." not in text:  # C libraries print some addresses with an IPv4 tail
            return text
    return str(ipaddress.IPv6Address(packed))


def normalise_address(raw: object) -> str | None:
    """One client address as read (``scope["client"][0]``: a str for a TCP peer, anything
    else for a unix socket peer or a proxy's header) as ``ipaddress``'s canonical text:
    IPv4 dotted quad, IPv6 compressed lower case (RFC 5952). Surrounding whitespace and
    brackets (``[2001:db8::1]``) and an IPv6 zone id (``fe80::1%eth0``, RFC 4007) are
    dropped; an IPv4-mapped IPv6 address (``::ffff:203.0.113.77``, also written
    ``::ffff:cb00:714d``; RFC 4291 2.5.5.2) is the IPv4 address it maps. None for anything
    that is not one address: a socket path, a host name, ``1.2.3.4:80``, leading zeros,
    more than ``MAX_ADDRESS_TEXT`` characters."""
    if type(raw) is not str or len(raw) > MAX_ADDRESS_TEXT or not raw.isascii():
        return None
    text = raw.strip()
    if ":" not in text:
        return text if _IPV4.fullmatch(text) else None
    # IPv6: brackets and a zone id are notation, not address.
    if text[:1] == "[" and text[-1:] == "]":
        text = text[1:-1]
    text = text.partition("%")[0]
    try:
        packed = inet_pton(AF_INET6, text)
    except (OSError, ValueError):  # ValueError: a NUL in the text
        return None
    return _v6_text(packed)


class IpMasker:
    """What of a client address is kept (``mode``) and the duplicate rule's key for it, both
    keyed by ``secret`` (``CLICKTRACK_IP_HASH_SECRET``, else the cookie secret)."""

    def __init__(self, mode: IpMode, secret: bytes) -> None:
        self.mode = mode
        # The full address leaves the redirect only in full mode; otherwise its country is
        # resolved here, before it is truncated or hashed.
        self._carries_country = mode is not IpMode.full
        # The keyed states, prepared once and copied per address.
        self._stored_hash = hmac.new(secret, digestmod=hashlib.sha256)
        # A key of its own, derived from the secret (as the session cookie's MAC does): a
        # window key is no stored hash nor a session MAC. BLAKE2b's keyed mode (RFC 7693):
        # one hash call per click, a third of HMAC-SHA256.
        key = hashlib.blake2b(secret, digest_size=32, person=b"ct-ip-window").digest()
        self._window_hash = hashlib.blake2b(key=key, digest_size=WINDOW_KEY_BYTES)

    def __call__(self, ip: object) -> str | None:
        """What is kept of a client address as read: ``mask(normalise_address(ip))``."""
        address = normalise_address(ip)
        return None if address is None else self.mask(address)

    def mask(self, address: str) -> str:
        """What is kept of a normalised address (``normalise_address``'s text): the address,
        its network's first address (``TRUNCATE_V4_PREFIX``, ``TRUNCATE_V6_PREFIX``), or a
        keyed hash (HMAC-SHA256, 32 hex characters)."""
        if self.mode is IpMode.full:
            return address
        if self.mode is IpMode.hash:
            # Keyed, so that the 2^32 IPv4 addresses cannot simply be hashed and looked up.
            digest = self._stored_hash.copy()
            digest.update(address.encode("ascii"))
            return digest.hexdigest()[:32]
        if ":" not in address:
            number = int.from_bytes(inet_pton(AF_INET, address)) >> _V4_HOST_BITS
            return inet_ntop(AF_INET, (number << _V4_HOST_BITS).to_bytes(4))
        number = int.from_bytes(inet_pton(AF_INET6, address)) >> _V6_HOST_BITS
        return _v6_text((number << _V6_HOST_BITS).to_bytes(16))

    def country(self, address: str) -> str | None:
        """The country the click record carries for a normalised address: its registry
        country in truncate and hash modes, None in full mode (or when unknown)."""
        return registry_country(address) if self._carries_country else None

    def window_key(self, address: str) -> str:
        """The per-IP duplicate rule's key for a normalised address, whatever the mode: keyed
        BLAKE2b of the full address, ``WINDOW_KEY_BYTES`` bytes as hex."""
        digest = self._window_hash.copy()  # the keyed state, prepared once
        digest.update(address.encode("ascii"))
        return digest.hexdigest()
