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

from app.api import bodies, queries
from app.api.params import GROUP_BY_PATTERN, GROUP_BY_WORDS, MAX_ID, PERIOD_PATTERN, PRINTABLE
from app.core.db import RETRY_AFTER_S, unreachable
from app.core.problems import in_words
from app.errors import ClickTrackError
from app.links.model import CODE_PATTERN
from app.money.plan import PATTERN_WORDS as PLAN_PATTERN_WORDS

log = logging.getLogger(__name__)


def error_response(
    status: int, kind: str, message: str, details: list[Any] | None = None
) -> JSONResponse:
    # "details": always a list, one entry per field at fault (empty when the error is not
    # about one field).
    body: dict[str, Any] = {"error": kind, "message": message, "details": details or []}
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
    details = [{"field": exc.field, "problem": exc.message}] if exc.field else []
    return error_response(exc.status, exc.kind, exc.describe(), details)


# Every ``pattern=`` of the API's parameters and bodies, in words: a caller never reads a
# regular expression (tests/unit/test_api_problems.py checks each pattern has its words).
PATTERN_WORDS = {
    PRINTABLE: "must not contain control or invisible characters",
    CODE_PATTERN: "must be 1 to 32 letters or digits",
    PERIOD_PATTERN: "must be a month as YYYY-MM",
    **PLAN_PATTERN_WORDS,
    GROUP_BY_PATTERN: GROUP_BY_WORDS,
}
SEND_AN_OBJECT = "send a JSON object with Content-Type: application/json"


def _bound(kind: str, ctx: Mapping[str, Any]) -> str | None:
    """An id or cursor's bound says what the bound is; None for any other."""
    if kind == "less_than_equal" and ctx.get("le") == MAX_ID:
        return f"must be at most {MAX_ID} (ids and cursors are whole numbers up to that)"
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
    if (bound := _bound(kind, ctx)) is not None:
        return bound
    return in_words(err)


def _field(err: Mapping[str, Any]) -> str:
    if err.get("type") == "json_invalid":
        return "body"  # its location is a character, not a field
    return ".".join(str(p) for p in err.get("loc", ()))


def validation_answer(exc: RequestValidationError) -> tuple[str, list[dict[str, str]]]:
    """The message and the per-field details a 422 answers for ``exc``."""
    details = [{"field": _field(err), "problem": problem(err)} for err in exc.errors()]
    first = details[0] if details else {"field": "", "problem": "invalid request"}
    if first["field"] in ("", "body"):
        return first["problem"], details  # about the whole body: it reads alone
    return f"{first['field']}: {first['problem']}", details


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, details = validation_answer(exc)
    return error_response(422, "invalid", message, details)


# FastAPI's one answer to a body ``json.loads`` could not read other than by a JSONDecodeError
# (a 400 with this text, the cause chained): not UTF-8, nested past Python's recursion
# limit, an integer past Python's 4300 digits.
_UNPARSED_BODY = "There was an error parsing the body"


def unparsed_body(cause: BaseException | None) -> str:
    """Why a body could not be read as JSON, in words (``cause``: what ``json.loads``
    raised)."""
    return bodies.not_json(cause) if cause is not None else "the body is not valid JSON"


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
