"""Query and body parameters shared by several routes.

The query parameters come as dependency classes, taken as ``Annotated[DayRange, Depends()]``:
each keeps its OpenAPI name, alias, pattern and default. FastAPI lists a route's own query
parameters before those of its dependencies, so a route whose parameters are all dependencies
lists them in the order of its signature."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

import annotated_types
from fastapi import Query
from pydantic import AfterValidator, AwareDatetime, StrictInt

from app.core.chars import REFUSED_CLASS
from app.core.years import YEARS_WORDS, in_years
from app.links.model import CODE_PATTERN
from app.money.periods import Period
from app.reports.traffic import Filters
from app.traffic.counts import DEVICES, TRAFFIC, VERSIONS, Dimension
from app.traffic.filters import UNKNOWN, dimension_filter

# Text sent for an id, a reason or a tracking string: Postgres text cannot hold NUL, no id has
# a use for control characters, and invisible ones (bidi overrides, zero-width spaces...) only
# make two ids look alike. The same characters the redirect refuses (app/core/chars.py).
PRINTABLE = f"^[^{REFUSED_CLASS}]*$"

# Ids and cursors are Postgres bigints: a larger number would not reach the query (asyncpg
# refuses it, and the answer could not name the field). Every integer id or cursor the API
# takes, in a path, a query or a body, is one of these two types, so validation refuses an
# out-of-range one by name (tests/integration/test_api_inputs.py walks the OpenAPI schema).
MAX_ID = 2**63 - 1
Id = Annotated[int, annotated_types.Ge(1), annotated_types.Le(MAX_ID)]
Cursor = Annotated[int, annotated_types.Ge(0), annotated_types.Le(MAX_ID)]
# An id in a JSON body: a JSON integer only (``true`` or ``"3"`` is refused, not read as 1 or 3).
BodyId = Annotated[StrictInt, annotated_types.Ge(1), annotated_types.Le(MAX_ID)]

STORABLE_YEARS = YEARS_WORDS


def storable_instant(at: datetime) -> datetime:
    """``at`` in UTC, the form every answer gives times in; a ``ValueError`` (a 422 naming
    the field) when its UTC instant is outside the years every stored time falls in
    (``app.core.years``: 1970 to 2999, as the CLI and the reports)."""
    if not in_years(at):
        raise ValueError(YEARS_WORDS)
    return at.astimezone(UTC)


# Every instant the API takes: with a time zone (a naive time is refused, never guessed as
# UTC), storable, and converted to UTC.
Instant = Annotated[AwareDatetime, AfterValidator(storable_instant)]

FromDay = Annotated[
    date | None,
    Query(
        alias="from",
        description="First day, in the period time zone (default: 29 days before `to`)",
    ),
]
ToDay = Annotated[
    date | None,
    Query(alias="to", description="Last day, in the period time zone, included (today)"),
]
PERIOD_PATTERN = r"^\d{4}-\d{2}$"  # a calculation period or a month: YYYY-MM
PeriodText = Annotated[str | None, Query(pattern=PERIOD_PATTERN, description="YYYY-MM")]
PublisherId = Annotated[
    Id | None,
    Query(ge=1, description="Admin keys; a network's key: itself or one of its members"),
]
LinkCode = Annotated[str | None, Query(pattern=CODE_PATTERN, description="Link code")]
TrackingText = Annotated[str | None, Query(max_length=128, pattern=PRINTABLE)]
TrackingId = Annotated[
    str | None, Query(max_length=128, pattern=PRINTABLE, description="Tracking id")
]
_DIMENSIONS = "|".join(d.value for d in Dimension)
GROUP_BY_PATTERN = rf"^(({_DIMENSIONS})(,({_DIMENSIONS}))*)?$"
GROUP_BY_WORDS = (
    f"must be dimensions among {', '.join(d.value for d in Dimension)}, separated by commas"
)
GroupByText = Annotated[
    str,
    Query(
        pattern=GROUP_BY_PATTERN,
        description="Comma-separated, in order: day, link, af, cn, cv, dp, country, device, "
        "browser, os, referrer, language, browser_version, os_version (dp, a version, or two "
        "of country to language: raw clicks, at most 31 days); empty: totals only",
    ),
]
_UNKNOWN_WORDS = f"`{UNKNOWN}`: clicks without it"
CountryText = Annotated[
    str | None,
    Query(description=f"ISO 3166-1 alpha-2 code (any case); {_UNKNOWN_WORDS}"),
]
DeviceText = Annotated[
    str | None,
    Query(description=f"One of {', '.join(DEVICES)}; {_UNKNOWN_WORDS}"),
]
BrowserText = Annotated[
    str | None,
    Query(min_length=1, max_length=128, pattern=PRINTABLE, description="Browser family, "
          f"exact (`Chrome Mobile`); {_UNKNOWN_WORDS}"),
]  # fmt: skip
OsText = Annotated[
    str | None,
    Query(min_length=1, max_length=128, pattern=PRINTABLE, description="OS family, exact "
          f"(`iOS`); {_UNKNOWN_WORDS}"),
]  # fmt: skip
ReferrerText = Annotated[
    str | None,
    Query(min_length=1, max_length=253, pattern=PRINTABLE, description="Referrer host (any "
          f"case); {_UNKNOWN_WORDS}"),
]  # fmt: skip
VersionText = Annotated[
    str | None,
    Query(min_length=1, max_length=140, pattern=PRINTABLE, description="Family and major "
          f"version, exact (`Chrome Mobile 131`, `iOS 18`; raw clicks); {_UNKNOWN_WORDS}"),
]  # fmt: skip
LanguageText = Annotated[
    str | None,
    Query(min_length=1, max_length=35, pattern=PRINTABLE, description="Primary language "
          f"subtag (`pt`, any case); {_UNKNOWN_WORDS}"),
]  # fmt: skip


class DayRange:
    """``from`` and ``to``: days in the period time zone, both included; either may be left
    out."""

    def __init__(self, first: FromDay = None, last: ToDay = None) -> None:
        self.first = first
        self.last = last


class PeriodRange:
    """``from`` and ``to``: calculation periods (``YYYY-MM``), both included."""

    def __init__(
        self,
        first: Annotated[PeriodText, Query(alias="from")] = None,
        last: Annotated[PeriodText, Query(alias="to")] = None,
    ) -> None:
        # Each end read here, so that a bad one is blamed on its own name (``from``, ``to``).
        self.first = checked_period(first, "from")
        self.last = checked_period(last, "to")


def checked_period(text: str | None, field: str) -> str | None:
    """``text`` as sent when it names a calculation period (``YYYY-MM``, a real month in
    the years periods are kept for); else a ``PeriodError`` (422) naming ``field``."""
    if text:
        Period.parse(text, field=field)
    return text


class TrackingFilters:
    """``link``, ``af``, ``cn``, ``cv``, ``dp``: exact values to keep."""

    def __init__(
        self,
        link: LinkCode = None,
        af: TrackingText = None,
        cn: TrackingText = None,
        cv: TrackingText = None,
        dp: TrackingText = None,
    ) -> None:
        self.link = link
        self.af = af
        self.cn = cn
        self.cv = cv
        self.dp = dp

    @property
    def filters(self) -> Filters:
        return Filters(link=self.link, af=self.af, cn=self.cn, cv=self.cv, dp=self.dp)


class OrderFilters(TrackingFilters):
    """The same filters, ``af`` documented as the tracking id (Live Order Tracking)."""

    def __init__(
        self,
        link: LinkCode = None,
        af: TrackingId = None,
        cn: TrackingText = None,
        cv: TrackingText = None,
        dp: TrackingText = None,
    ) -> None:
        super().__init__(link, af, cn, cv, dp)


def _checked(name: str, text: str | None) -> str | None:
    """A traffic dimension's filter as the report compares it (``traffic.filters``: a value
    no click can have is an ``InvalidInput``, 422)."""
    return None if text is None else dimension_filter(name, text)


class TrafficFilters(TrackingFilters):
    """The tracking filters, and exact values of the traffic dimensions: ``country``,
    ``device``, ``browser``, ``os``, ``referrer``, ``language`` (``unknown``: clicks without
    it), ``browser_version``, ``os_version`` (raw clicks). Country, device, referrer and
    language are read in any case (stored: country upper case, the others lower case);
    browser and OS families and versions are exact."""

    def __init__(
        self,
        link: LinkCode = None,
        af: TrackingText = None,
        cn: TrackingText = None,
        cv: TrackingText = None,
        dp: TrackingText = None,
        country: CountryText = None,
        device: DeviceText = None,
        browser: BrowserText = None,
        os: OsText = None,
        referrer: ReferrerText = None,
        language: LanguageText = None,
        browser_version: VersionText = None,
        os_version: VersionText = None,
    ) -> None:
        super().__init__(link, af, cn, cv, dp)
        self.country = _checked("country", country)
        self.device = _checked("device", device)
        self.browser = browser
        self.os = os
        self.referrer = _checked("referrer", referrer)
        self.language = _checked("language", language)
        self.browser_version = browser_version
        self.os_version = os_version

    @property
    def filters(self) -> Filters:
        traffic = {d.value: getattr(self, d.value) for d in (*TRAFFIC, *VERSIONS)}
        return Filters(link=self.link, af=self.af, cn=self.cn, cv=self.cv, dp=self.dp, **traffic)


class TrafficGrouping:
    """``group_by``: the traffic report's dimensions, as text (``traffic.parse_group_by``)."""

    def __init__(self, group_by: GroupByText = "day") -> None:
        self.group_by = group_by


class PublisherChoice:
    """``publisher_id``: the publisher an admin or a network's key acts for
    (``scope.acting_for``)."""

    def __init__(self, publisher_id: PublisherId = None) -> None:
        self.publisher_id = publisher_id


class BomFlag:
    """``bom``: a CSV export starts with a byte order mark."""

    def __init__(
        self,
        bom: Annotated[
            bool, Query(description="Start with a UTF-8 byte order mark (for Excel on Windows)")
        ] = False,
    ) -> None:
        self.bom = bom
