"""The one place the API reads a JSON body: ``JsonRoute``, the route class of every API router.

FastAPI reads a body with Starlette's ``request.json()`` (``json.loads`` of the raw bytes),
which guesses UTF-16 or UTF-32 from the first bytes, keeps the last of a key given twice and
lets a ``RecursionError`` through. ``JsonRoute`` parses the body first, with ``parse``, and
hands FastAPI the result, so every body is read the same way:

- UTF-8 only (``\\xff\\xfe{}`` is "not UTF-8", never read as UTF-16);
- a key given twice in an object is refused: ``'name' given twice``;
- nesting past Python's recursion limit, or an integer past 4300 digits, is said in words;
- a POST, PUT, PATCH or DELETE route that takes no body refuses a body (an empty object
  ``{}`` asks for nothing and passes): ``this call takes no body``. Like a body that is not
  JSON, this is said before the key is checked. A GET's body has no meaning in HTTP: ignored.

Every failure is a 422 ``invalid`` in words, as any other malformed JSON. The postback reads
its body raw (its signature covers the exact bytes) and calls ``parse`` itself.
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from app.api.queries import given_twice
from app.errors import InvalidInput

NO_BODY = "this call takes no body"


class DuplicateKey(ValueError):
    """A JSON object gives one key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(given_twice(key))


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(key)
        found[key] = value
    return found


def not_json(cause: BaseException) -> str:
    """Why bytes are not a JSON body, in words (``cause``: what decoding or parsing raised,
    other than a ``JSONDecodeError``)."""
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


def parse(body: bytes) -> Any:
    """``body`` as JSON: UTF-8, no key given twice. Raises ``RequestValidationError`` (a
    syntax error at its character) or ``InvalidInput``: a 422 in words either way."""
    try:
        return json.loads(body.decode("utf-8"), object_pairs_hook=_unique)
    except json.JSONDecodeError as bad:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", bad.pos), "ctx": {"error": bad.msg}}]
        ) from None
    except DuplicateKey as twice:
        raise InvalidInput(str(twice)) from None
    except (RecursionError, ValueError) as bad:  # UnicodeDecodeError is a ValueError
        raise InvalidInput(not_json(bad)) from None


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI would read a body of this type as JSON (no type: it would)."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _refuse_a_body(body: bytes) -> None:
    """``NO_BODY`` (422) for a body sent to a call that takes none; an empty JSON object
    (what a client sends by default) asks for nothing, so it passes."""
    try:
        empty = json.loads(body) == {}
    except (RecursionError, ValueError):
        empty = False
    if not empty:
        raise InvalidInput(NO_BODY)


class JsonRoute(APIRoute):
    """An API route whose JSON body is read by ``parse``; one without a body parameter
    refuses a non-empty body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        answer = super().get_route_handler()
        takes_body = self.body_field is not None

        async def read_then_answer(request: Request) -> Response:
            body = await request.body()
            if body:
                if not takes_body:
                    if request.method not in ("GET", "HEAD"):  # a GET's body means nothing
                        _refuse_a_body(body)
                elif _is_json(request.headers.get("content-type")):
                    # Starlette's request.json() returns this without parsing again.
                    request._json = parse(body)
            return await answer(request)

        return read_then_answer
