"""The dashboard's query parameters and form fields, taken as text and read here (as the
API's validation reads them), so that a bad one answers an HTML page (``web.problem``), not
the API's JSON."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from pydantic import TypeAdapter, ValidationError

from app.errors import InvalidInput
from app.links.model import echoed
from app.reports.ranges import DEFAULT_DAYS
from app.traffic.counts import FIRST_DAY, LAST_DAY, MAX_DAYS

_DAY = TypeAdapter(date)
_FLAG = TypeAdapter(bool)
_DAY_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MAX_AMOUNT = Decimal("999999999999.99")  # the withdrawals' column: 14 digits, 2 decimals


class BadQuery(InvalidInput):
    """A bad value of a dashboard page's query parameter (a link, a bookmark, an address
    typed by hand): the request is malformed, 400, said in words, never silently replaced."""

    status = 400
    kind = "bad_request"


class ReversedRange(BadQuery):
    """A range whose first day comes after its last: said rather than silently turned round."""


@contextmanager
def query_checked() -> Iterator[None]:
    """Any ``InvalidInput`` raised while reading a page's query (here or by the reports'
    own checks: a month, a grouping) raised again as ``BadQuery``: 400 with its words."""
    try:
        yield
    except BadQuery:
        raise
    except InvalidInput as exc:
        raise BadQuery(exc.message, field=exc.field) from exc


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 day``, ``2 days``: a count with its noun agreeing (``words``: an irregular plural)."""
    return f"{count:,} {word if count == 1 else words or word + 's'}"


def _day_text(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def day(text: str | None, field: str) -> date | None:
    """A day, ``YYYY-MM-DD``, within the days a report may name; None when left out."""
    if text is None or text == "":  # an emptied date field of the range form: left out
        return None
    bounds = f"days run from {FIRST_DAY} to {LAST_DAY}"
    try:
        found = _DAY.validate_python(text)
    except ValidationError:
        if _DAY_SHAPE.fullmatch(text) and text[:4] == "0000":  # year 0: no calendar has it
            raise BadQuery(f"{text} is out of range: {bounds}", field=field) from None
        raise BadQuery("expected a day as YYYY-MM-DD", field=field) from None
    if not FIRST_DAY <= found <= LAST_DAY:
        raise BadQuery(f"{found} is out of range: {bounds}", field=field)
    return found


def days(first: str | None, last: str | None, today: date) -> tuple[date | None, date | None]:
    """The ``from`` and ``to`` days asked for (None when left out). Raises ``ReversedRange``
    when ``from`` is after ``to`` (after today when ``to`` is left out)."""
    start, end = day(first, "from"), day(last, "to")
    if start is not None and start > (end or today):
        to = _day_text(end) if end is not None else f"today, {_day_text(today)}"
        raise ReversedRange(
            f'the first day ({_day_text(start)}) is after the last day, "to" ({to}); '
            'choose a "from" on or before the "to"',
            field="from",
        )
    return start, end


def shown_days(first: str | None, last: str | None, today: date) -> tuple[date, date]:
    """The days a page shows: ``from`` to ``to`` as asked (by default the last
    ``DEFAULT_DAYS`` up to ``to``, itself by default today), at most ``MAX_DAYS``; a day out
    of range, a reversed or a longer range raises ``BadQuery`` saying so."""
    start, end = days(first, last, today)
    end = end or today
    start = start or max(FIRST_DAY, end - timedelta(days=DEFAULT_DAYS - 1))
    if start > end:  # "to" before the default "from": only when "to" is the first day
        start = end
    count = (end - start).days + 1
    if count > MAX_DAYS:
        raise BadQuery(
            f"{_day_text(start)} to {_day_text(end)} is {plural(count, 'day')}: a range is at "
            f"most {plural(MAX_DAYS, 'day')} long, within {FIRST_DAY} to {LAST_DAY}",
            field="from",
        )
    return start, end


def flag(text: str | None, field: str) -> bool:
    """A yes/no (``true``, ``false``, ``1``, ``0``, ...); false when left out."""
    if text is None:
        return False
    try:
        return _FLAG.validate_python(text)
    except ValidationError:
        raise BadQuery("expected true or false", field=field) from None


# An amount as a person writes it: ASCII digits, commas only in the usual grouping of
# thousands (1,234.56), at most one decimal point (the number of decimals is checked after);
# a minus is read, to be refused as not positive.
_AMOUNT = re.compile(r"-?(?:[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)(?:\.[0-9]+)?", re.ASCII)
NOT_AN_AMOUNT = (
    "is not an amount: write dollars and cents with the digits 0-9, such as 1200.00 or "
    "1,200.00 (commas only between groups of three digits)"
)


def amount(text: str | None) -> Decimal | None:
    """A withdrawal's amount in dollars and cents (``120``, ``120.5``, ``1,200.00``, with or
    without ``US$``); None when left empty (everything withdrawable). Only ASCII digits, a
    comma only between groups of three (``1,2,3`` is refused, not read as 123), no exponent,
    at most two decimals."""
    cleaned = (text or "").strip().removeprefix("US$").removeprefix("$")
    if not cleaned:
        return None
    if not _AMOUNT.fullmatch(cleaned):
        raise InvalidInput(f"{echoed(text or '')!r} {NOT_AN_AMOUNT}", field="amount")
    try:
        value = Decimal(cleaned.replace(",", ""))
    except InvalidOperation:  # cannot happen after the pattern; kept as a 4xx all the same
        raise InvalidInput(f"{echoed(text or '')!r} {NOT_AN_AMOUNT}", field="amount") from None
    if value > MAX_AMOUNT:
        raise InvalidInput(
            f"is too large: a withdrawal is at most US${MAX_AMOUNT:,}", field="amount"
        )
    if value <= 0:
        raise InvalidInput("must be a positive amount, such as 120.00", field="amount")
    if value != value.quantize(Decimal("0.01")):
        raise InvalidInput("must be whole cents, at most two decimals", field="amount")
    return value.quantize(Decimal("0.01"))
