"""The dashboard's query parameters, taken as text and read here (as the API's validation
reads them), so that a bad one answers an HTML page (``web.problem``), not the API's JSON."""

from __future__ import annotations

from datetime import date

from pydantic import TypeAdapter, ValidationError

from app.errors import InvalidInput

_DAY = TypeAdapter(date)
_FLAG = TypeAdapter(bool)


def day(text: str | None, field: str) -> date | None:
    """A day, ``YYYY-MM-DD``; None when left out."""
    if text is None:
        return None
    try:
        return _DAY.validate_python(text)
    except ValidationError:
        raise InvalidInput("expected a day as YYYY-MM-DD", field=field) from None


def flag(text: str | None, field: str) -> bool:
    """A yes/no (``true``, ``false``, ``1``, ``0``, ...); false when left out."""
    if text is None:
        return False
    try:
        return _FLAG.validate_python(text)
    except ValidationError:
        raise InvalidInput("expected true or false", field=field) from None
