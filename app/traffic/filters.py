"""What a traffic report's filter on a traffic dimension may ask for, read once for the API
and the dashboard alike: a value no click can have is refused in words (a 422 in the API, the
400 page in the dashboard), never answered with an empty report.

- ``country``: two letters in any case, compared upper case (``de`` is ``DE``); not one of
  ``NOT_COUNTRIES`` (``XX`` and the like are stored as unknown: ask for ``unknown``).
- ``device``: a device type (``DEVICE_TYPES``) in any case.
- ``referrer``: a host name (``news.example.com``, Unicode or ASCII, any case) or an address,
  compared in the ASCII form the flusher stores (``app.core.hosts.normalise_host``): no
  scheme, path, port or space.
- ``language``: a primary language subtag of 2 or 3 letters in any case, compared lower case
  (``pt``, not ``pt-BR``), as the flusher stores it.
- ``unknown`` (any case) everywhere: clicks without that dimension.

Other filters (browser, os, versions, tracking strings) are exact text, checked by their
callers' length and character rules.
"""

from __future__ import annotations

import re

from app.core.dimension_values import DEVICE_TYPES, NOT_COUNTRIES
from app.core.hosts import normalise_host
from app.errors import InvalidInput

UNKNOWN = "unknown"
_LETTERS = re.compile(r"[A-Za-z]+", re.ASCII)


def dimension_filter(name: str, text: str) -> str:
    """``text`` as the report compares it with the stored ``name`` dimension; raises
    ``InvalidInput`` (field ``name``) for a value no click can have. Names other than
    country, device, referrer and language are returned as given."""
    if text.lower() == UNKNOWN:
        return UNKNOWN
    if name == "country":
        if len(text) != 2 or not _LETTERS.fullmatch(text):
            raise InvalidInput(f"must be a country's two-letter code, like DE, or {UNKNOWN}",
                               field=name)  # fmt: skip
        if text.upper() in NOT_COUNTRIES:
            raise InvalidInput(f"{text.upper()} stands for an unknown country, never a "
                               f"click's: ask for {UNKNOWN}", field=name)  # fmt: skip
        return text.upper()
    if name == "device":
        if text.lower() not in DEVICE_TYPES:
            raise InvalidInput(f"must be one of {', '.join(DEVICE_TYPES)} or {UNKNOWN}",
                               field=name)  # fmt: skip
        return text.lower()
    if name == "referrer":
        try:  # the one form the flusher stores a referrer's host in
            return normalise_host(text)
        except ValueError:
            raise InvalidInput("must be a host name, like news.example.com (no scheme, path "
                               f"or port), or {UNKNOWN}", field=name) from None  # fmt: skip
    if name == "language":
        if not 2 <= len(text) <= 3 or not _LETTERS.fullmatch(text):
            raise InvalidInput("must be a primary language subtag of 2 or 3 letters, like pt "
                               f"(not pt-BR), or {UNKNOWN}", field=name)  # fmt: skip
        return text.lower()
    return text
