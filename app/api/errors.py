"""Every API error is JSON: ``{"error": <kind>, "message": <text>}``, never a bare 500 page.

The one place errors become HTTP answers: a ``ClickTrackError`` (``app/errors.py``, the tree
and its statuses) raised anywhere under a route, FastAPI's validation errors, Starlette's
HTTP errors, values Postgres refused, and anything unexpected (500, logged).

Routes do not translate domain errors: a ``LinkError``, ``PlanInUse`` or ``SignatureError``
reaches this module as raised, and its class gives the status and ``kind``; the message is
``describe()``, so an error naming its ``field`` reads ``<field>: <message>``. A 401 also
carries ``WWW-Authenticate: Bearer``; every 503 carries ``Retry-After``.

A validation error reads in plain words (``problem``): malformed JSON names its character,
a body that is no JSON object asks for one, a broken ``pattern=`` is told as its rule
(``PATTERN_WORDS``), an unknown field is refused by name.

Postgres out of reach (``app.core.db.unreachable``: refused, reset or lost connections,
timeouts of the pool's acquire or of a query, the server shutting down or out of
connections) answers 503 ``unavailable`` with a message in words, never a 500: the request
was not applied and may be sent again. Routes do not catch these either.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api import queries
from app.api.params import GROUP_BY_PATTERN, MAX_ID, PERIOD_PATTERN, PRINTABLE
from app.core.db import RETRY_AFTER_S, unreachable
from app.errors import ClickTrackError
from app.links.model import CODE_PATTERN
from app.money.plan import CATEGORY_PATTERN, PLAN_NAME_PATTERN

log = logging.getLogger(__name__)


def error_response(
    status: int, kind: str, message: str, details: list[Any] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": kind, "message": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=status_headers(status))


def status_headers(status: int) -> dict[str, str] | None:
    """The headers an error answer of ``status`` carries besides its body."""
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if status == 503:
        return {"Retry-After": str(RETRY_AFTER_S)}
    return None


async def _clicktrack_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ClickTrackError)
    if exc.status >= 500:
        log.warning("request failed", extra={"error": exc.kind, "detail": exc.describe()})
    return error_response(exc.status, exc.kind, exc.describe())


# Every ``pattern=`` of the API's parameters and bodies, in words: a caller never reads a
# regular expression (tests/unit/test_api_problems.py checks each pattern has its words).
PATTERN_WORDS = {
    PRINTABLE: "must not contain control or invisible characters",
    CODE_PATTERN: "must be 1 to 32 letters or digits",
    PERIOD_PATTERN: "must be a month as YYYY-MM",
    CATEGORY_PATTERN: "must be lowercase slugs (letters, digits, single hyphens) with '/' "
    "between levels, like computer-office/tablets",
    PLAN_NAME_PATTERN: "must not contain control characters",
    GROUP_BY_PATTERN: "must be dimensions among day, link, af, cn, cv, dp, separated by commas",
}
SEND_AN_OBJECT = "send a JSON object with Content-Type: application/json"


def _number(value: object) -> str:
    """A bound as a person writes it: 3600, 0.5, 9223372036854775807 (never 9.2e+18)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _bound(kind: str, ctx: Mapping[str, Any]) -> str:
    """A number's bound in words; an id or cursor's says what the bound is."""
    if kind == "less_than_equal" and ctx.get("le") == MAX_ID:
        return f"must be at most {MAX_ID} (ids and cursors are whole numbers up to that)"
    words = {
        "less_than_equal": ("le", "at most"),
        "greater_than_equal": ("ge", "at least"),
        "less_than": ("lt", "less than"),
        "greater_than": ("gt", "more than"),
    }
    key, phrase = words[kind]
    return f"must be {phrase} {_number(ctx.get(key))}"


def _plural(count: object, one: str) -> str:
    return f"{count} {one}" if count == 1 else f"{count} {one}s"


def _choices(expected: object) -> str:
    """pydantic's ``expected`` of an enum or a literal ("'a', 'b' or 'c'"), kept as it is:
    the values a caller may send, already quoted."""
    return str(expected)


# pydantic's own error types, each in words (tests/unit/test_api_problems.py enumerates
# them). The field is named by the caller of ``problem``: these read after "<field>: ".
_SIMPLE_WORDS = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number, without a fraction",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "string_unicode": "must be text",
    "datetime_parsing": "must be a date and time like 2026-06-01T12:00:00Z",
    "datetime_from_date_parsing": "must be a date and time like 2026-06-01T12:00:00Z",
    "datetime_type": "must be a date and time like 2026-06-01T12:00:00Z",
    "date_parsing": "must be a day as YYYY-MM-DD",
    "date_from_datetime_parsing": "must be a day as YYYY-MM-DD",
    "date_from_datetime_inexact": "must be a day as YYYY-MM-DD, without a time",
    "date_type": "must be a day as YYYY-MM-DD",
    "timezone_aware": "needs a time zone, like 2026-06-01T12:00:00Z or +02:00",
    "decimal_parsing": "must be a decimal number like 12.50",
    "decimal_type": "must be a decimal number like 12.50",
    "uuid_parsing": "must be a UUID like 123e4567-e89b-12d3-a456-426614174000",
    "uuid_type": "must be a UUID like 123e4567-e89b-12d3-a456-426614174000",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "list_type": "must be a list",
    "url_parsing": "must be a URL",
    "url_scheme": "must be an http or https URL",
}


def _size(kind: str, ctx: Mapping[str, Any]) -> str | None:
    """A length, a choice or a decimal's digits in words; None for another kind."""
    if kind == "string_too_short":
        n = ctx.get("min_length")
        return "must not be empty" if n == 1 else f"must be at least {_plural(n, 'character')}"
    if kind == "string_too_long":
        return f"must be at most {_plural(ctx.get('max_length'), 'character')}"
    if kind == "too_short":
        return f"must have at least {_plural(ctx.get('min_length'), 'item')}"
    if kind == "too_long":
        return f"must have at most {_plural(ctx.get('max_length'), 'item')}"
    if kind in ("enum", "literal_error"):
        return f"must be one of {_choices(ctx.get('expected'))}"
    if kind == "decimal_max_digits":
        return f"must have at most {_plural(ctx.get('max_digits'), 'digit')}"
    if kind == "decimal_max_places":
        places = ctx.get("decimal_places")
        return f"must have at most {_plural(places, 'digit')} after the decimal point"
    if kind == "decimal_whole_digits":
        whole = ctx.get("whole_digits")
        return f"must have at most {_plural(whole, 'digit')} before the decimal point"
    return None


def problem(err: Mapping[str, Any]) -> str:
    """One validation error of pydantic or FastAPI, in plain words."""
    kind, ctx = err.get("type", ""), err.get("ctx") or {}
    loc = tuple(err.get("loc", ()))
    if kind == "json_invalid":
        at = f"at character {loc[1]}: " if len(loc) > 1 and isinstance(loc[1], int) else ""
        return f"the body is not valid JSON ({at}{ctx.get('error', 'malformed')})"
    if loc == ("body",) and kind in ("missing", "model_attributes_type", "model_type"):
        return SEND_AN_OBJECT
    if kind == "string_pattern_mismatch":
        return PATTERN_WORDS.get(str(ctx.get("pattern")), "has a character that is not allowed")
    if kind in _SIMPLE_WORDS:
        return _SIMPLE_WORDS[kind]
    if kind in ("less_than_equal", "greater_than_equal", "less_than", "greater_than"):
        return _bound(kind, ctx)
    if (sized := _size(kind, ctx)) is not None:
        return sized
    if kind == "value_error":
        # A validator's own ValueError: its text is already written for a person.
        return str(ctx.get("error", "invalid")) or "invalid"
    if kind.startswith("decimal_"):
        return "must be a decimal number like 12.50"
    return str(err.get("msg", "invalid"))


def _field(err: Mapping[str, Any]) -> str:
    if err.get("type") == "json_invalid":
        return "body"  # its location is a character, not a field
    return ".".join(str(p) for p in err.get("loc", ()))


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [{"field": _field(err), "problem": problem(err)} for err in exc.errors()]
    first = details[0] if details else {"field": "", "problem": "invalid request"}
    if first["field"] in ("", "body"):
        message = first["problem"]  # about the whole body: it reads alone
    else:
        message = f"{first['field']}: {first['problem']}"
    return error_response(422, "invalid", message, details)


# FastAPI's one answer to a body ``json.loads`` could not read other than by a JSONDecodeError
# (a 400 with this text, the cause chained): not UTF-8, nested past Python's recursion
# limit, an integer past Python's 4300 digits.
_UNPARSED_BODY = "There was an error parsing the body"


def unparsed_body(cause: BaseException | None) -> str:
    """Why a body could not be read as JSON, in words (``cause``: what ``json.loads``
    raised)."""
    if isinstance(cause, UnicodeDecodeError):
        return (
            f"the body is not valid JSON (not UTF-8 text: byte 0x{cause.object[cause.start]:02x} "
            f"at byte {cause.start})"
        )
    if isinstance(cause, RecursionError):
        return "the body is not valid JSON (nested too deep)"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "the body is not valid JSON (a number is too long: at most 4300 digits)"
    return "the body is not valid JSON"


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSED_BODY:
        # The same answer as any other malformed JSON: 422, saying what is wrong.
        return error_response(422, "invalid", unparsed_body(exc.__cause__))
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, kind, str(exc.detail))


# Text Postgres cannot store (a NUL character): the request's fault, whatever the field.
_UNSTORABLE_TEXT = (
    asyncpg.exceptions.CharacterNotInRepertoireError,
    asyncpg.exceptions.UntranslatableCharacterError,
)


async def _argument_refused(request: Request, exc: Exception) -> JSONResponse:
    """asyncpg refused a value before sending it (an id past 2**63 - 1, say), or Postgres
    refused a text's characters: the request's fault, though it passed validation. Other
    Postgres data errors are bugs."""
    if isinstance(exc, _UNSTORABLE_TEXT):
        return error_response(422, "invalid", "a text contains a character that cannot be stored")
    if type(exc) is not asyncpg.DataError:
        return await _unexpected(request, exc)
    return error_response(422, "invalid", "a value is out of the range the API accepts")


def database_message(exc: BaseException) -> str:
    """What a person reads when Postgres is out of reach (``unreachable(exc)``)."""
    if isinstance(exc, TimeoutError):
        return "the database did not answer in time; the request was not applied, try again"
    return "the database cannot be reached right now; the request was not applied, try again"


async def _database_unreachable(request: Request, exc: Exception) -> JSONResponse:
    if not unreachable(exc):  # an OSError or asyncpg error that is not an outage: a bug
        return await _unexpected(request, exc)
    log.warning("database unreachable", extra={"error": repr(exc), "path": request.url.path})
    return error_response(503, "unavailable", database_message(exc))


# The classes whose instances may mean "Postgres is out of reach"; each is checked by
# ``unreachable`` (TimeoutError and ConnectionError are OSErrors).
DATABASE_DOWN = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal", "internal error; the request was not applied")


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as JSON in words, and refuse unknown query parameters
    on its API routes (``app.api.queries``: called here, before any router is included, so
    that each API route gets it)."""
    queries.install(app)
    app.add_exception_handler(ClickTrackError, _clicktrack_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(asyncpg.DataError, _argument_refused)
    for error in DATABASE_DOWN:
        app.add_exception_handler(error, _database_unreachable)
    app.add_exception_handler(Exception, _unexpected)
