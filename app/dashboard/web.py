"""The dashboard's HTTP plumbing: its pages' headers, the signed-in session of a request,
cookies, forms, downloads, and the HTML page an error answers with.

Its routes are ``PageRoute``s: any ``ClickTrackError`` a route lets through (from any layer)
answers the HTML error page with its status, and Postgres out of reach
(``app.core.db.unreachable``) an HTML 503 page with ``Retry-After``: never the API's JSON."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from app.core.db import RETRY_AFTER_S, unreachable
from app.core.resources import Resources
from app.dashboard import layout
from app.dashboard.inputs import BadQuery
from app.dashboard.sessions import COOKIE, PATH, DashboardSession, Sessions, same_token
from app.errors import ClickTrackError
from app.reports.exports import MEDIA_TYPE, CsvExport

log = logging.getLogger(__name__)

MAX_FORM_FIELDS = 10  # the largest dashboard form has 4

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        # script-src 'self': the builder's copy button (static/copy.js); no inline script.
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
        "form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def problem(error: ClickTrackError) -> HTMLResponse:
    """An error as a page, with its status (the API's, or 400 for a page's bad query); an
    internal error (500) is not described: its words are not for a visitor."""
    if error.status >= 500 and error.status != 503:
        return html(layout.error_page("Something went wrong: please try again later."), 500)
    return html(layout.error_page(error.describe()), error.status)


def refused() -> HTMLResponse:
    """A form without the session's CSRF token (stale, or not sent by the dashboard): 403,
    and nothing changed."""
    return html(
        layout.error_page(
            "Refused: this form has expired or did not come from your dashboard. Nothing was "
            "changed; reload the page and try again."
        ),
        403,
    )


def unavailable() -> HTMLResponse:
    """The page for Postgres out of reach: 503, ``Retry-After``."""
    page = html(
        layout.error_page(
            "The dashboard cannot reach its database right now. "
            "Nothing was changed; please try again in a few seconds."
        ),
        503,
    )
    page.headers["Retry-After"] = str(RETRY_AFTER_S)
    return page


def _refuse_repeats(request: Request, known: set[str]) -> None:
    """A ``BadQuery`` (400) for the first of ``known`` given more than once."""
    seen: set[str] = set()
    for name, _value in request.query_params.multi_items():
        if name in known:
            if name in seen:
                raise BadQuery(f"{name!r} given twice: give it once")
            seen.add(name)


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route reads, those of its dependencies included (the Traffic
    page's filters are one)."""
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return names


class PageRoute(APIRoute):
    """A dashboard route: a ``ClickTrackError`` it raises, the HTML error page
    (``problem``); when Postgres is out of reach, the HTML 503 page. A download that fails
    after its first bytes were sent cannot change its status: its connection drops."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        answer = super().get_route_handler()
        # The page's own query parameters: one given twice is refused (400), never taken as
        # its last value; any other parameter is ignored (a browser or a link may add it).
        known = _query_names(self.dependant)

        async def answer_or_unavailable(request: Request) -> Response:
            try:
                _refuse_repeats(request, known)
                return await answer(request)
            except ClickTrackError as exc:
                log.info("dashboard refused", extra={"error": exc.kind, "path": request.url.path})
                return problem(exc)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                log.warning(
                    "database unreachable", extra={"error": repr(exc), "path": request.url.path}
                )
                return unavailable()

        return answer_or_unavailable


def methods_taken(path: str, pages: Iterable[tuple[str, BaseRoute]], fallback: object) -> list[str]:
    """The methods the dashboard's ``pages`` (each with the prefix it is included under)
    take at ``path`` (none: no such page); ``fallback``, the catch-all's endpoint, left
    out."""
    taken: set[str] = set()
    for prefix, route in pages:
        if not isinstance(route, APIRoute) or route.endpoint is fallback:
            continue
        if path.startswith(prefix) and route.path_regex.match(path.removeprefix(prefix)):
            taken |= route.methods or set()
    return sorted(taken)


def wrong_method(request: Request, allowed: list[str]) -> HTMLResponse:
    """A dashboard address asked with a method it does not take: the 405 page, with
    ``Allow``. Signing out is a button (a form sent with POST), never a link to follow."""
    if request.url.path == f"{PATH}/logout":
        message = (
            "To sign out, use the Sign out button at the top of any dashboard page: "
            "this address only takes that button's form."
        )
    else:
        message = (
            f"This dashboard address does not take {request.method} requests; "
            f"it takes {', '.join(allowed)}."
        )
    page = html(layout.error_page(message), 405)
    page.headers["Allow"] = ", ".join(allowed)
    return page


def download(export: CsvExport) -> StreamingResponse:
    """A CSV export, streamed, with the API's download headers."""
    return StreamingResponse(export.chunks, media_type=MEDIA_TYPE, headers=export.headers)


def sessions(resources: Resources) -> Sessions:
    secret = resources.settings.cookie_secret.get_secret_value().encode()
    return Sessions(resources.redis, resources.keys, secret)


async def current_session(request: Request, resources: Resources) -> DashboardSession | None:
    """The session the request's cookie names, if it is still valid."""
    async with resources.pool.acquire() as conn:
        return await sessions(resources).find(conn, request.cookies.get(COOKIE))


def set_cookie(response: Response, resources: Resources, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=PATH,
        secure=resources.settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )


def to_login() -> RedirectResponse:
    return RedirectResponse(f"{PATH}/login", status_code=303, headers={"Cache-Control": "no-store"})


async def read_form(request: Request) -> dict[str, str]:
    """A URL-encoded form's fields (the first value of each); anything else, or a form of
    more than ``MAX_FORM_FIELDS`` fields: none (so its CSRF check fails: 403, not 500)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    text = (await request.body()).decode("utf-8", "replace")
    try:
        fields = parse_qs(text, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # more fields than any dashboard form has: not one of its forms
        return {}
    return {name: values[0] for name, values in fields.items()}


async def posted_form(
    request: Request, resources: Resources
) -> tuple[DashboardSession, dict[str, str]] | Response:
    """A dashboard POST's session and form, its CSRF token checked; or the answer to give
    instead: the login page without a session, 403 for a missing or wrong token."""
    session = await current_session(request, resources)
    if session is None:
        return to_login()
    form = await read_form(request)
    if not csrf_ok(session, form):
        return refused()
    return session, form


def csrf_ok(session: DashboardSession, form: dict[str, str]) -> bool:
    """Whether a form of a signed-in page carries its session's CSRF token (besides
    SameSite: an older browser, or a sibling site, could still post without it)."""
    return same_token(session.csrf, form.get("csrf"))
