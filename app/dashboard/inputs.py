"""The dashboard's query parameters and form fields, taken as text and read here (as the
API's validation reads them), so that a bad one answers an HTML page (``web.problem``), not
the API's JSON."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from pydantic import TypeAdapter, ValidationError

from app.errors import InvalidInput

_DAY = TypeAdapter(date)
_FLAG = TypeAdapter(bool)
MAX_AMOUNT = Decimal("999999999999.99")  # the withdrawals' column: 14 digits, 2 decimals


class ReversedRange(InvalidInput):
    """A range whose first day comes after its last: the request is malformed (400), not a
    value that breaks a rule, and it is said rather than silently turned round."""

    status = 400
    kind = "bad_request"


def _day_text(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def day(text: str | None, field: str) -> date | None:
    """A day, ``YYYY-MM-DD``; None when left out."""
    if text is None or text == "":  # an emptied date field of the range form: left out
        return None
    try:
        return _DAY.validate_python(text)
    except ValidationError:
        raise InvalidInput("expected a day as YYYY-MM-DD", field=field) from None


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


def flag(text: str | None, field: str) -> bool:
    """A yes/no (``true``, ``false``, ``1``, ``0``, ...); false when left out."""
    if text is None:
        return False
    try:
        return _FLAG.validate_python(text)
    except ValidationError:
        raise InvalidInput("expected true or false", field=field) from None


def amount(text: str | None) -> Decimal | None:
    """A withdrawal's amount in dollars and cents (``120``, ``120.5``, ``1,200.00``, with or
    without ``US$``); None when left empty (everything withdrawable)."""
    cleaned = (text or "").strip().removeprefix("US$").removeprefix("$").replace(",", "")
    if not cleaned:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise InvalidInput(
            f"{text!r} is not an amount: write dollars and cents, such as 120.00", field="amount"
        ) from None
    if not value.is_finite() or value <= 0 or value > MAX_AMOUNT:
        raise InvalidInput("must be a positive amount, such as 120.00", field="amount")
    if value != value.quantize(Decimal("0.01")):
        raise InvalidInput("must be whole cents, at most two decimals", field="amount")
    return value.quantize(Decimal("0.01"))
