"""pydantic's validation errors in plain words, shared by the API (``app/api/errors.py``,
which adds its patterns and ids) and the plan files' loader (``app/money/plans_store.py``):
whoever validates with pydantic says the same thing for the same fault.

``in_words(err)`` takes one error as pydantic's ``errors()`` gives it (``type``, ``ctx``,
``msg``) and returns the words that read after ``<field>: ``. Every error type pydantic_core
can raise on our models has its words here (tests/unit/test_api_problems.py enumerates
``pydantic_core.core_schema.ErrorType``); pydantic's own English is never shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FALLBACK = "is not valid"  # an error type none of our models can raise (see the test)
_INSTANT = "must be a date and time like 2026-06-01T12:00:00Z"
_DAY = "must be a day as YYYY-MM-DD"
_DECIMAL = "must be a decimal number like 12.50"
_UUID = "must be a UUID like 123e4567-e89b-12d3-a456-426614174000"
_OBJECT = "must be a JSON object"
_LIST = "must be a list"

SIMPLE_WORDS = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number, without a fraction",
    "int_parsing_size": "must be a whole number of at most 4300 digits",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number (1e400 and the like are too large)",
    "multiple_of": "is not an allowed step",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "string_unicode": "must be text",
    "string_not_ascii": "must be ASCII text",
    "datetime_parsing": _INSTANT,
    "datetime_from_date_parsing": _INSTANT,
    "datetime_type": _INSTANT,
    "datetime_object_invalid": _INSTANT,
    "datetime_past": "must be in the past",
    "datetime_future": "must be in the future",
    "date_parsing": _DAY,
    "date_from_datetime_parsing": _DAY,
    "date_from_datetime_inexact": "must be a day as YYYY-MM-DD, without a time",
    "date_type": _DAY,
    "date_past": "must be a day in the past",
    "date_future": "must be a day in the future",
    "time_type": "must be a time of day like 12:00:00",
    "time_parsing": "must be a time of day like 12:00:00",
    "time_delta_type": "must be a duration in seconds",
    "time_delta_parsing": "must be a duration in seconds",
    "timezone_aware": "needs a time zone, like 2026-06-01T12:00:00Z or +02:00",
    "timezone_naive": "must not have a time zone",
    "timezone_offset": "has the wrong time zone offset",
    "decimal_parsing": _DECIMAL,
    "decimal_type": _DECIMAL,
    "uuid_parsing": _UUID,
    "uuid_type": _UUID,
    "uuid_version": "must be a UUID of another version",
    "dict_type": _OBJECT,
    "mapping_type": _OBJECT,
    "model_type": _OBJECT,
    "model_attributes_type": _OBJECT,
    "dataclass_type": _OBJECT,
    "invalid_key": "has a key that is not text",
    "list_type": _LIST,
    "tuple_type": _LIST,
    "set_type": _LIST,
    "frozen_set_type": _LIST,
    "iterable_type": _LIST,
    "set_item_not_hashable": "must be a list of plain values",
    "none_required": "must be null",
    "json_type": "must be JSON text",
    "json_invalid": "must be valid JSON",
    "recursion_loop": "is nested too deep",
    "union_tag_invalid": "has a kind that is not one of those allowed",
    "union_tag_not_found": "needs its kind",
    "url_type": "must be a URL",
    "url_parsing": "must be a URL",
    "url_syntax_violation": "must be a URL",
    "url_too_long": "is too long for a URL",
    "url_scheme": "must be an http or https URL",
    "assertion_error": "fails a check",
}


def number(value: object) -> str:
    """A bound as a person writes it: 3600, 0.5, 9223372036854775807 (never 9.2e+18)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def plural(count: object, one: str) -> str:
    return f"{count} {one}" if count == 1 else f"{count} {one}s"


_BOUNDS = {
    "less_than_equal": ("le", "at most"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "greater_than": ("gt", "more than"),
}


def _size(kind: str, ctx: Mapping[str, Any]) -> str | None:
    """A length, a choice or a decimal's digits in words; None for another kind."""
    if kind == "string_too_short":
        n = ctx.get("min_length")
        return "must not be empty" if n == 1 else f"must be at least {plural(n, 'character')}"
    if kind == "string_too_long":
        return f"must be at most {plural(ctx.get('max_length'), 'character')}"
    if kind == "too_short":
        return f"must have at least {plural(ctx.get('min_length'), 'item')}"
    if kind == "too_long":
        return f"must have at most {plural(ctx.get('max_length'), 'item')}"
    if kind in ("enum", "literal_error"):
        # pydantic's ``expected``: the values a caller may send, already quoted.
        return f"must be one of {ctx.get('expected')}"
    if kind == "decimal_max_digits":
        return f"must have at most {plural(ctx.get('max_digits'), 'digit')}"
    if kind == "decimal_max_places":
        places = ctx.get("decimal_places")
        return f"must have at most {plural(places, 'digit')} after the decimal point"
    if kind == "decimal_whole_digits":
        whole = ctx.get("whole_digits")
        return f"must have at most {plural(whole, 'digit')} before the decimal point"
    return None


def in_words(err: Mapping[str, Any]) -> str:
    """One pydantic error in plain words (what reads after ``<field>: ``)."""
    kind, ctx = str(err.get("type", "")), err.get("ctx") or {}
    if kind in SIMPLE_WORDS:
        return SIMPLE_WORDS[kind]
    if kind in _BOUNDS:
        key, phrase = _BOUNDS[kind]
        return f"must be {phrase} {number(ctx.get(key))}"
    if (sized := _size(kind, ctx)) is not None:
        return sized
    if kind == "string_pattern_mismatch":
        return "has a character that is not allowed"
    if kind == "value_error":
        # A validator's own ValueError: its text is already written for a person.
        return str(ctx.get("error", "invalid")) or "invalid"
    if kind.startswith("decimal_"):
        return _DECIMAL
    return FALLBACK
