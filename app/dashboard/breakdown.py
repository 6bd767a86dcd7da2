"""The Traffic page's data: traffic over a range of days broken down by one dimension (a
traffic dimension such as the country or the device, or day, link, af, cn, cv), narrowed by
exact filters, read from the traffic report (``app.reports.traffic``) and ordered by clicks.

The query's text is read here (``asked``), as the API's validation reads it, so that a bad
value answers the dashboard's 400 page: an unknown dimension, a link code that cannot be one,
a filter value too long or holding characters no click can carry. The report's own checks
(a range too long, two traffic dimensions over more than 31 days) raise ``InvalidInput``;
``inputs.query_checked`` turns them into the same 400 page."""

from __future__ import annotations

import heapq
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from app.accounts.publishers import get_publisher
from app.core.chars import REFUSED_CLASS
from app.core.resources import Resources
from app.dashboard import countries
from app.dashboard.inputs import BadQuery
from app.errors import InvalidInput
from app.links.model import CODE_PATTERN, echoed
from app.reports import traffic
from app.reports.traffic import Filters
from app.traffic import counts
from app.traffic.counts import DEVICES, TRAFFIC, Dimension, TrafficQuery, TrafficRow
from app.traffic.days import zone_name
from app.traffic.filters import UNKNOWN, dimension_filter

# The dimensions a breakdown is by, with their names on the page; the traffic dimensions
# first (the page's purpose), then those of the overview. dp is a filter only: it is free
# text, often one value per click.
BY = {
    Dimension.country: "Country",
    Dimension.device: "Device",
    Dimension.browser: "Browser",
    Dimension.os: "OS",
    Dimension.referrer: "Referrer",
    Dimension.language: "Language",
    Dimension.day: "Day",
    Dimension.link: "Link",
    Dimension.af: "Tracking id (af)",
    Dimension.cn: "Campaign (cn)",
    Dimension.cv: "Creative (cv)",
}
DEFAULT_BY = Dimension.country
# The filters (query names of ``Filters``), with the words of their form field.
FILTERS = {
    "link": "Link code",
    "af": "af: tracking id",
    "cn": "cn: campaign id",
    "cv": "cv: creative id",
    "dp": "dp: dynamic parameter",
    "country": "Country code (DE, or unknown)",
    "device": f"Device ({', '.join(DEVICES)}, {UNKNOWN})",
    "browser": "Browser (Chrome, Safari…)",
    "os": "OS (Android, iOS, Windows…)",
    "referrer": "Referrer host (news.example.com)",
    "language": "Language (en, pt…)",
}
MAX_VALUE = 128  # the longest tracking string a click carries (the redirect's limit)
MAX_LINES = 500  # the most values the table lists; the rest are summed in one line
_CODE = re.compile(CODE_PATTERN)
_REFUSED = re.compile(f"[{REFUSED_CLASS}]")
_TRAFFIC_NAMES = frozenset(d.value for d in TRAFFIC)


@dataclass(frozen=True)
class Asked:
    """A breakdown as asked: by which dimension, and the filters given (name -> exact value,
    in ``FILTERS``' order; an empty form field is no filter)."""

    by: Dimension
    filters: Mapping[str, str]

    @property
    def report_filters(self) -> Filters:
        return Filters(**self.filters)


def _by(text: str | None) -> Dimension:
    if text is None or text == "":
        return DEFAULT_BY
    for dimension in BY:
        if dimension.value == text:
            return dimension
    names = ", ".join(d.value for d in BY)
    raise BadQuery(f"{echoed(text)!r} is not one of {names}", field="by")


def _filter_value(name: str, text: str) -> str:
    """A filter's value as the report compares it; ``BadQuery`` when no click can have it."""
    if len(text) > MAX_VALUE:
        raise BadQuery(f"is longer than {MAX_VALUE} characters", field=name)
    if _REFUSED.search(text):
        raise BadQuery("holds a control or invisible character", field=name)
    if name == "link" and not _CODE.fullmatch(text):
        raise BadQuery("a link code is 1 to 32 letters and digits", field=name)
    if name in _TRAFFIC_NAMES:
        try:  # the API's own reading of it: the same values accepted, in the same words
            return dimension_filter(name, text)
        except InvalidInput as exc:
            raise BadQuery(exc.message, field=name) from None
    return text


def asked(by: str | None, given: Mapping[str, str | None]) -> Asked:
    """The breakdown asked for by a query's text: ``by`` and the filters of ``FILTERS``
    (``given``, by name). Raises ``BadQuery`` naming the field at fault."""
    filters = {
        name: _filter_value(name, text) for name in FILTERS if (text := given.get(name) or "")
    }
    return Asked(_by(by), filters)


@dataclass(frozen=True)
class Line:
    """One value of the dimension (or a sum of several: "Other", the totals) and its counts."""

    value: str  # as the report and its filters spell it (a day ISO, "unknown", "" for None)
    label: str  # as the page shows it
    clicks: int
    billable: int
    unique: int
    flagged: int

    def share(self, total: int) -> float:
        """Its part of ``total`` clicks, 0 to 1."""
        return self.clicks / total if total else 0.0


@dataclass(frozen=True)
class Breakdown:
    publisher_name: str
    csrf: str
    first: date
    last: date
    time_zone: str
    asked: Asked
    lines: list[Line]  # the values with the most clicks first, at most ``MAX_LINES``
    rest: Line | None  # the values beyond ``MAX_LINES``, summed
    totals: Line


def label(dimension: Dimension, value: date | str | None) -> str:
    """A value in words: "Unknown" for a traffic dimension's clicks without it, a country's
    name with its code, "(none)" and "(empty)" for a tracking string not sent or sent
    empty."""
    if isinstance(value, date):
        return value.isoformat()
    if dimension in TRAFFIC:
        if value is None or value == UNKNOWN:
            return "Unknown"
        return countries.country_name(value) if dimension is Dimension.country else value
    if value is None:
        return "(none)"
    return value if value else "(empty)"


def _line(dimension: Dimension, row: TrafficRow) -> Line:
    value = row.value(dimension)
    raw = value.isoformat() if isinstance(value, date) else value or ""
    return Line(
        raw, label(dimension, value), row.clicks, row.billable, row.unique_clicks, row.flagged
    )


def _sum_line(text: str, clicks: int, unique: int, flagged: int) -> Line:
    return Line("", text, clicks, clicks - flagged, unique, flagged)


@dataclass
class _Top:
    """While streaming a report: the ``MAX_LINES`` rows with the most clicks so far (a
    min-heap of (clicks, -order, row): ties keep the report's order) and every row's sums."""

    kept: list[tuple[int, int, TrafficRow]]
    rows: int = 0
    clicks: int = 0
    unique: int = 0
    flagged: int = 0

    def add(self, row: TrafficRow) -> None:
        self.clicks += row.clicks
        self.unique += row.unique_clicks
        self.flagged += row.flagged
        entry = (row.clicks, -self.rows, row)
        self.rows += 1
        if len(self.kept) < MAX_LINES:
            heapq.heappush(self.kept, entry)
        elif entry[:2] > self.kept[0][:2]:
            heapq.heapreplace(self.kept, entry)

    def top(self) -> list[TrafficRow]:
        return [row for _, _, row in sorted(self.kept, key=lambda e: (-e[0], -e[1]))]


async def _streamed(resources: Resources, query: TrafficQuery) -> _Top:
    """Every row of the report, streamed (``counts.iter_traffic``): a dimension with many
    values (referrer hosts over a year) is never held whole, only its top rows."""
    found = _Top([])
    async for row in counts.iter_traffic(resources.pool, query):
        found.add(row)
    return found


async def breakdown(
    resources: Resources, owner: int, csrf: str, first: date, last: date, wanted: Asked
) -> Breakdown:
    """The breakdown of ``owner``'s traffic over ``first``..``last`` (days in the period
    time zone) as ``wanted``. Raises ``InvalidInput`` (a ``RangeError``) when the report
    refuses the range."""
    tz = resources.settings.period_tz
    query = traffic.traffic_query(owner, first, last, tz, wanted.by.value, wanted.report_filters)
    async with resources.pool.acquire() as conn:
        publisher = await get_publisher(conn, owner)
    assert publisher is not None  # a key's publisher is never deleted
    found = await _streamed(resources, query)
    top = found.top()
    rest = None
    if found.rows > len(top):
        listed = counts.totals(top)
        rest = _sum_line(
            f"Other values ({found.rows - len(top):,}): in the CSV",
            found.clicks - listed.clicks,
            found.unique - listed.unique_clicks,
            found.flagged - listed.flagged,
        )
    return Breakdown(
        publisher_name=publisher.name,
        csrf=csrf,
        first=first,
        last=last,
        time_zone=zone_name(tz),
        asked=wanted,
        lines=[_line(wanted.by, row) for row in top],
        rest=rest,
        totals=_sum_line("Total", found.clicks, found.unique, found.flagged),
    )
