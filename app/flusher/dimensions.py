"""The traffic dimensions the flusher stores with each click (issue 19).

One ``Resolver`` per process (``shared_resolver``: every loop of ``python -m app.flusher``
and every ``Flusher`` of a test share it, and its caches), built from settings when the
first flusher starts, so an unusable ``CLICKTRACK_GEO_DATABASE`` stops the process then.
Each click costs four cache lookups (user agent, address, referer, language): the parsing
runs once per distinct value, across batches.

The country: the one the redirect carried in the record (record minor 1.2, ``cc``: truncate
and hash modes, resolved from the full address before it was cut; since 1.3 also the trusted
proxy's country header, or the country a link's country rule was judged by) wins; otherwise
the one of the stored ``ip`` (full mode, or a record of an older redirect). The ASN comes from the
stored ``ip`` alone: a truncated address gives its network's, a hashed one none.
"""

from __future__ import annotations

import functools
from pathlib import Path

from app.clicks.record import Click
from app.dimensions.country import country_code
from app.dimensions.resolve import Dimensions, Resolver
from app.settings import Settings

DIMENSION_COLUMNS = (
    "country",
    "asn",
    "device",
    "browser",
    "browser_major",
    "os",
    "os_major",
    "referrer_host",
    "language",
)
Values = tuple[object, ...]
# Dimensions switched off (CLICKTRACK_DIMENSIONS=off): the columns stay NULL, "unknown".
NO_VALUES: Values = (None,) * len(DIMENSION_COLUMNS)


@functools.cache
def shared_resolver(geo_database: Path | None, country_header: str | None) -> Resolver:
    """The process's ``Resolver`` for these settings (built on first use, then shared)."""
    return Resolver(mmdb_path=geo_database, country_header=country_header)


def resolver_for(settings: Settings) -> Resolver | None:
    """The process's resolver, or None when ``CLICKTRACK_DIMENSIONS`` is off."""
    if not settings.dimensions:
        return None
    return shared_resolver(settings.geo_database_path, settings.country_header)


def values(dimensions: Dimensions, carried_country: str | None = None) -> Values:
    """``dimensions`` in the order of ``DIMENSION_COLUMNS``; ``carried_country``, the one
    the redirect resolved (checked again: a record is data from the stream), wins."""
    return (
        country_code(carried_country) or dimensions.country,
        dimensions.asn,
        dimensions.device,
        dimensions.browser,
        dimensions.browser_major,
        dimensions.os,
        dimensions.os_major,
        dimensions.referrer_host,
        dimensions.language,
    )


def of_click(resolver: Resolver | None, click: Click) -> Values:
    """The dimension values of one click, ``NO_VALUES`` without a resolver."""
    if resolver is None:
        return NO_VALUES
    found = resolver.resolve(click.user_agent, click.ip, click.referer, click.accept_language)
    return values(found, click.country)
