"""The one entry point: a click's request facts -> its ``Dimensions``. Pure per call.

``Resolver`` joins the jobs of this package (``agent``, ``country``, ``referrer``,
``language``), each behind its own LRU cache keyed by the distinct input text, so a value
seen before costs a dictionary look-up. The caches belong to the resolver (one per flusher
process) and are bounded; ``functools.lru_cache`` is thread-safe, and a value computed twice
by a race is the same value.

The flusher (a later step of issue 19) builds one ``Resolver`` from settings at startup and
calls ``resolve`` with the facts the redirect recorded, the full client address included:
the country is resolved before the address is truncated or hashed.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from app.dimensions.agent import UNKNOWN_AGENT, Agent, DeviceType, parse_agent
from app.dimensions.country import (
    NOWHERE,
    MmdbDatabase,
    Place,
    country_from_header,
    embedded_country,
    global_address,
    registry_country,
)
from app.dimensions.language import first_language
from app.dimensions.referrer import referrer_host

# Cache sizes, in distinct values. An entry is its key (a user agent ~150 bytes, an address,
# a referer up to a few hundred bytes) and a small frozen result: ~0.5 KB at most, so the
# four caches together stay under ~30 MB per flusher. The sizes cover a busy day's working
# set: user agents repeat heavily (a few thousand cover nearly all clicks); addresses repeat
# least, and a miss there costs only a few microseconds; referers and languages are few.
AGENT_CACHE_SIZE = 20_000
ADDRESS_CACHE_SIZE = 50_000
REFERER_CACHE_SIZE = 10_000
LANGUAGE_CACHE_SIZE = 2_000
# Forms of a global address the registry data cannot read as given: brackets, spaces around
# it, an IPv4-mapped IPv6 address (addresses stored before the redirect normalised them).
_MAY_NEED_PARSING = re.compile(r"^\s|\s$|\[|ffff:", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Dimensions:
    """The traffic dimensions of one click; ``None`` = unknown.

    - ``country``: ISO 3166-1 alpha-2, upper case (``"DE"``); ``asn``: autonomous system
      number, only from an operator's database that has it;
    - ``device``: ``desktop``, ``mobile``, ``tablet``, ``bot`` or ``other``;
    - ``browser``/``os``: uap-core families (``"Chrome Mobile"``, ``"iOS"``), at most 64
      characters; ``browser_major``/``os_major``: major versions;
    - ``referrer_host``: the referer's host in ASCII form (``"news.example.com"``);
    - ``language``: the primary subtag of Accept-Language's preferred (highest-weight)
      language, lower case (``"pt"``).
    """

    country: str | None = None
    asn: int | None = None
    device: DeviceType | None = None
    browser: str | None = None
    browser_major: int | None = None
    os: str | None = None
    os_major: int | None = None
    referrer_host: str | None = None
    language: str | None = None


class Resolver:
    """Resolves request facts to ``Dimensions``, with a bounded cache per job.

    ``mmdb_path``: an operator's MaxMind-format database, or ``None`` for the embedded
    registry data alone; opened here, so a missing or unreadable file raises
    ``GeoDatabaseError`` at startup, never on a click. ``country_header``: the name of the
    header a trusted CDN or ingress sets (``"CF-IPCountry"``), or ``None``: without a name
    ``resolve`` ignores any header value it is given, since a client could send one.
    """

    def __init__(
        self,
        *,
        mmdb_path: str | os.PathLike[str] | None = None,
        country_header: str | None = None,
    ) -> None:
        self.database = MmdbDatabase(mmdb_path) if mmdb_path is not None else None
        # Header names compare case-insensitively; the caller reads the header by this name.
        self.country_header = (country_header or "").strip().lower() or None
        # functools' wrapper type (not a bare Callable) so cache_info() stays visible to
        # the tests and, later, to the flusher's metrics.
        self._agent: functools._lru_cache_wrapper[Agent] = functools.lru_cache(AGENT_CACHE_SIZE)(
            parse_agent
        )
        self._place: functools._lru_cache_wrapper[Place] = functools.lru_cache(ADDRESS_CACHE_SIZE)(
            self._locate
        )
        self._referrer: functools._lru_cache_wrapper[str | None] = functools.lru_cache(
            REFERER_CACHE_SIZE
        )(referrer_host)
        self._language: functools._lru_cache_wrapper[str | None] = functools.lru_cache(
            LANGUAGE_CACHE_SIZE
        )(first_language)

    def resolve(
        self,
        ua: str | None,
        ip: str | None,
        referer: str | None,
        accept_language: str | None,
        country_header: str | None = None,
    ) -> Dimensions:
        """The dimensions of one click from its user agent, full client address, Referer,
        Accept-Language and the trusted country header's value (each ``None`` when absent).
        Never raises on any text."""
        agent = self._agent(ua) if ua else UNKNOWN_AGENT
        place = self._where(ip) if ip else NOWHERE
        trusted = country_from_header(country_header) if self.country_header else None
        return Dimensions(
            country=trusted or place.country,
            asn=place.asn,
            device=agent.device,
            browser=agent.browser,
            browser_major=agent.browser_major,
            os=agent.os,
            os_major=agent.os_major,
            referrer_host=self._referrer(referer) if referer else None,
            language=self._language(accept_language) if accept_language else None,
        )

    def _where(self, ip: str) -> Place:
        """Where ``ip`` is. Without an operator's database, the registry data is asked with
        the text as stored (``iptocc`` answers ``None`` for private, reserved and malformed
        text, never raises, in well under a microsecond: cheaper than a cache), and only a
        bracketed or IPv4-mapped form it cannot read is parsed (``_locate``, cached)."""
        if self.database is None:
            country = registry_country(ip)
            if country is not None or not _MAY_NEED_PARSING.search(ip):
                return Place(country=country) if country is not None else NOWHERE
        return self._place(ip)

    def _locate(self, ip: str) -> Place:
        """The operator's database first (more precise, and the only one with an ASN), then
        the embedded registry data for the country it lacks."""
        address = global_address(ip)
        if address is None:
            return NOWHERE
        place = self.database.lookup(address) if self.database is not None else NOWHERE
        if place.country is None:
            place = Place(country=embedded_country(address), asn=place.asn)
        return place

    def close(self) -> None:
        """Release the operator's database file, if one was opened."""
        if self.database is not None:
            self.database.close()
