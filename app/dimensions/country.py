"""Client address -> country (ISO 3166-1 alpha-2) and, when known, its ASN. Pure per call.

Three sources, the first that knows wins (``Resolver`` in ``resolve.py`` orders them):

1. a country header set by a trusted CDN or ingress (``country_from_header``: Cloudflare's
   ``CF-IPCountry``, CloudFront's ``CloudFront-Viewer-Country``, ...), only when the operator
   names the header; the caller reads it only from requests through its trusted proxies;
2. an operator-provided MaxMind-format database (``MmdbDatabase``): GeoIP2/GeoLite2 Country,
   City or ASN, DB-IP's lite country or ASN files, anything with MaxMind's record shapes
   ``{"country": {"iso_code": "DE"}}``, ``{"registered_country": ...}``,
   ``{"autonomous_system_number": 3320}``; opened once, when the resolver is built;
3. the embedded default (``embedded_country``): ``iptocc``, whose wheel carries the five
   Regional Internet Registries' delegation files, compiled into its extension and
   refreshed with every release, so nothing is read or downloaded at run time. It is the
   country a registry *assigned* the block to, which agrees with commercial databases for
   about 95% of IPv4 addresses (the package's own figure); it has no ASN.

An address that is not global (private, loopback, link-local, shared, documentation,
multicast) has no country: ``None`` from every source, without a lookup.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import iptocc
import maxminddb
from maxminddb.errors import InvalidDatabaseError

from app.core.dimension_values import NOT_COUNTRIES
from app.settings import ConfigError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# The longest text that can be an address: an IPv6 literal in brackets with a zone id is
# under 64 characters; anything longer is refused before it is parsed.
_MAX_ADDRESS_LENGTH = 64


class GeoDatabaseError(ConfigError):
    """The operator's MaxMind-format database cannot be used (missing, unreadable, not a
    MaxMind DB); raised when the resolver is built, so the process stops at startup."""


@dataclass(frozen=True, slots=True)
class Place:
    """What an address tells: ``country`` an ISO 3166-1 alpha-2 code in upper case, ``asn``
    an autonomous system number; ``None`` = unknown."""

    country: str | None = None
    asn: int | None = None


NOWHERE = Place()


def global_address(text: str) -> Address | None:
    """``text`` (an address as the edge stored it: ``203.0.113.7``, ``2001:db8::1``, an IPv6
    literal in brackets, an IPv4-mapped IPv6 address) -> the address to look up, or ``None``
    when it is no address or not a global one."""
    text = text.strip()
    if len(text) > _MAX_ADDRESS_LENGTH:
        return None
    try:
        address: Address = ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # "::ffff:192.0.2.1" is how a dual-stack socket shows an IPv4 client.
        address = address.ipv4_mapped
    if not address.is_global or address.is_multicast:
        return None
    return address


def country_code(value: object) -> str | None:
    """``value`` as an ISO 3166-1 alpha-2 code in upper case, or ``None`` when it is not two
    ASCII letters or is one of the codes that mean "unknown"."""
    if not isinstance(value, str) or len(value) != 2 or not value.isascii():
        return None
    code = value.upper()
    if not code.isalpha() or code in NOT_COUNTRIES:
        return None
    return code


def country_from_header(value: str | None) -> str | None:
    """A trusted CDN's country header (``"DE"``, ``"de"``, ``" DE "``) -> ``"DE"``, or
    ``None`` for a missing, unknown (``XX``, ``T1``) or malformed value."""
    return None if value is None else country_code(value.strip())


def embedded_country(address: Address) -> str | None:
    """The country the Regional Internet Registries assigned ``address`` to (``iptocc``'s
    embedded data, a lookup of well under a microsecond), or ``None``."""
    return country_code(iptocc.country_code(str(address)))


def registry_country(address: str) -> str | None:
    """``embedded_country`` of an address already in canonical text (the redirect's
    ``normalise_address``), without parsing it again: the redirect's hot path calls this in
    the privacy modes. A non-global address has no registry country, so none is needed."""
    return country_code(iptocc.country_code(address))


class MmdbDatabase:
    """An operator's MaxMind-format database file, opened (memory-mapped) once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open ``path``; raises ``GeoDatabaseError`` naming the file and the reason when it
        is missing, unreadable or not a MaxMind DB."""
        self.path = Path(path)
        try:
            self._reader = maxminddb.open_database(self.path)
        except (OSError, InvalidDatabaseError, ValueError) as exc:
            raise GeoDatabaseError(
                f"the MaxMind-format database {str(self.path)!r} cannot be used: {exc}"
            ) from exc
        self.database_type: str = self._reader.metadata().database_type

    def lookup(self, address: Address) -> Place:
        """``address`` -> its country (``country``, else ``registered_country``) and ASN, as
        far as the file has them; ``NOWHERE`` when it has no record."""
        try:
            record = self._reader.get(address)
        except (ValueError, InvalidDatabaseError):
            # An IPv6 address asked of an IPv4-only file, or a damaged record: this address
            # falls back to the next source instead of stopping the flusher.
            return NOWHERE
        if not isinstance(record, dict):
            return NOWHERE
        return Place(country=_record_country(record), asn=_record_asn(record))

    def close(self) -> None:
        """Release the file's mapping."""
        self._reader.close()


def _record_country(record: dict[str, object]) -> str | None:
    for key in ("country", "registered_country"):
        part = record.get(key)
        if isinstance(part, dict) and (code := country_code(part.get("iso_code"))):
            return code
    return None


def _record_asn(record: dict[str, object]) -> int | None:
    asn = record.get("autonomous_system_number")
    # bool is an int subclass; a MaxMind ASN is a uint32 and never 0.
    if isinstance(asn, int) and not isinstance(asn, bool) and 0 < asn < 2**32:
        return asn
    return None
