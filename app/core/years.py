"""The years every stored time falls in: 1970 to 2999, in UTC.

One bound for every time a caller gives that is stored or compared with stored ones (an API
key's or a link's expiry, any instant the API takes, the CLI's times and days, the reports'
days and periods), with one wording: ``YEARS_WORDS``. Python stores years 1 to 9999 and
Postgres more; the narrower bound keeps every time a person may mean and refuses typos
(``9999-12-31``, ``0202-01-01``) with words instead of storing them.
"""

from __future__ import annotations

from datetime import UTC, datetime

FIRST_YEAR, LAST_YEAR = 1970, 2999
YEARS_WORDS = f"must be in the years {FIRST_YEAR} to {LAST_YEAR} (UTC)"


def in_years(at: datetime) -> bool:
    """Whether the aware time ``at`` falls in ``FIRST_YEAR`` to ``LAST_YEAR`` in UTC."""
    try:
        utc = at.astimezone(UTC)
    except OverflowError:  # past 9999-12-31 or before 0001-01-01 once in UTC
        return False
    return FIRST_YEAR <= utc.year <= LAST_YEAR
