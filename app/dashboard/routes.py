"""The publisher dashboard: sign in with an API key, see the overview, charts and tables,
download the CSVs. Pages are rendered on the server (``pages.py``) from what ``view.py``
reads; the session is in ``sessions.py``, its HTTP side in ``web.py``; the downloads are the
reports' own CSV exports (``downloads.py``), for the signed-in publisher. The withdrawals',
the links', the Traffic breakdown's and the Postbacks pages have their own routers
(``routes_withdrawals.py``, ``routes_links.py``, ``routes_traffic.py``,
``routes_postbacks.py``), included at the end. A bad query value (a day,
a month, a range too long or reversed, a grouping, a flag, a filter) answers a 400 HTML
page saying why, never the API's JSON, never a silent substitute; an unknown query parameter
is ignored (pages are linked to by browsers)."""

from __future__ import annotations

import functools
from importlib import resources as package_files
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.accounts.apikeys import Role, authenticate
from app.api.deps import NowDep, ResourcesDep
from app.core.resources import Resources
from app.dashboard import (
    breakdown,
    downloads,
    inputs,
    layout,
    pages,
    routes_links,
    routes_postbacks,
    routes_traffic,
    routes_withdrawals,
    web,
)
from app.dashboard.sessions import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    LOGIN_CSRF_TTL_S,
    PATH,
    SESSION_TTL_S,
    same_token,
)
from app.dashboard.view import dashboard_view
from app.errors import NotFound
from app.traffic.days import day_of

router = APIRouter(prefix=PATH, include_in_schema=False, route_class=web.PageRoute)

# Taken as text and read by ``inputs``: a bad value answers a page, not the API's JSON.
FromText = Annotated[str | None, Query(alias="from")]
ToText = Annotated[str | None, Query(alias="to")]
FlagText = Annotated[str | None, Query()]
Text = Annotated[str | None, Query()]


# -- signing in and out ----------------------------------------------------------------------


def _login_form(resources: Resources, error: str | None = None, status: int = 200) -> Response:
    token = web.sessions(resources).login_token()
    response = web.html(layout.login_page(token, error), status)
    web.set_cookie(response, resources, LOGIN_CSRF_COOKIE, token, LOGIN_CSRF_TTL_S)
    return response


@router.get("/login")
async def login_form(request: Request, resources: ResourcesDep) -> Response:
    if await web.current_session(request, resources) is not None:
        return RedirectResponse(PATH, status_code=303)
    return _login_form(resources)


@router.post("/login")
async def login(request: Request, resources: ResourcesDep) -> Response:
    form = await web.read_form(request)
    sessions = web.sessions(resources)
    if not sessions.login_token_matches(form.get("csrf"), request.cookies.get(LOGIN_CSRF_COOKIE)):
        return _login_form(resources, "The form expired: please sign in again.", 403)
    key = form.get("api_key", "").strip()
    async with resources.pool.acquire() as conn:
        principal = await authenticate(conn, key) if key else None
    if principal is None:
        return _login_form(resources, "This API key is not valid.", 401)
    if principal.role is not Role.publisher or principal.publisher_id is None:
        return _login_form(resources, "The dashboard is for publisher keys.", 403)
    _, cookie = await sessions.create(principal.key_id, principal.publisher_id)
    response = RedirectResponse(PATH, status_code=303, headers={"Cache-Control": "no-store"})
    web.set_cookie(response, resources, COOKIE, cookie, SESSION_TTL_S)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PATH)
    return response


@router.post("/logout")
async def logout(request: Request, resources: ResourcesDep) -> Response:
    session = await web.current_session(request, resources)
    if session is None:
        return web.to_login()
    if not same_token(session.csrf, (await web.read_form(request)).get("csrf")):
        return web.refused()
    await web.sessions(resources).delete(session.session_id)
    response = web.to_login()
    response.delete_cookie(COOKIE, path=PATH)
    return response


# -- the page --------------------------------------------------------------------------------


@router.get("")
async def dashboard(
    request: Request,
    resources: ResourcesDep,
    now: NowDep,
    first: FromText = None,
    last: ToText = None,
) -> Response:
    session = await web.current_session(request, resources)
    if session is None:
        return web.to_login()
    today = day_of(now, resources.settings.period_tz)
    shown = inputs.shown_days(first, last, today)
    view = await dashboard_view(session, resources, *shown, now)
    return web.html(pages.dashboard_page(view))


# The files of static/ a page may load, with their media types; nothing else is served.
STATIC = {
    "dashboard.css": "text/css; charset=utf-8",
    "copy.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


@functools.cache
def _static(name: str) -> bytes:
    return (package_files.files("app.dashboard") / "static" / name).read_bytes()


@router.get("/static/{name:path}")
async def static_file(name: str) -> Response:
    if name not in STATIC:
        return web.problem(NotFound("no such file"))
    return Response(
        _static(name),
        media_type=STATIC[name],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


# -- downloads: the reports' CSV exports, for the signed-in publisher ------------------------


@router.get("/export/orders.csv")
async def export_orders(
    request: Request,
    resources: ResourcesDep,
    first: FromText = None,
    last: ToText = None,
    bom: FlagText = None,
) -> Response:
    session = await web.current_session(request, resources)
    if session is None:
        return web.to_login()
    with inputs.query_checked():
        export = downloads.orders(session.publisher_id, resources, first, last, bom)
    return web.download(export)


@router.get("/export/traffic.csv")
async def export_traffic(
    request: Request,
    resources: ResourcesDep,
    filters: Annotated[routes_traffic.FilterTexts, Depends()],
    first: FromText = None,
    last: ToText = None,
    group_by: str = "day",
    bom: FlagText = None,
) -> Response:
    """The traffic report as CSV, grouped and filtered as the API's ``traffic.csv`` is (the
    Traffic page's download); filters read as that page reads them."""
    session = await web.current_session(request, resources)
    if session is None:
        return web.to_login()
    with inputs.query_checked():
        chosen = breakdown.asked(None, filters.given).report_filters
        export = downloads.traffic_by(
            session.publisher_id, resources, first, last, group_by, bom, chosen
        )
    return web.download(export)


@router.get("/export/income.csv")
async def export_income(
    request: Request,
    resources: ResourcesDep,
    first: FromText = None,
    last: ToText = None,
    bom: FlagText = None,
) -> Response:
    session = await web.current_session(request, resources)
    if session is None:
        return web.to_login()
    with inputs.query_checked():
        export = await downloads.income_by_period(session.publisher_id, resources, first, last, bom)
    return web.download(export)


# -- the other pages, each in its own module -------------------------------------------------

router.include_router(routes_withdrawals.router)
router.include_router(routes_links.router)
router.include_router(routes_traffic.router)
router.include_router(routes_postbacks.router)


# Every method a browser or a script may send: a page that does not take one answers the
# dashboard's own 405 page (``web.wrong_method``), never the API's JSON.
_EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@router.api_route("", methods=[m for m in _EVERY_METHOD if m != "GET"])
async def dashboard_wrong_method(request: Request) -> Response:
    """``/dashboard`` itself takes only GET."""
    return web.wrong_method(request, ["GET"])


@router.api_route("/{rest:path}", methods=_EVERY_METHOD)
async def no_such_page(request: Request, rest: str) -> Response:
    """Any other address under the dashboard: a 404 page in words, not the API's JSON; a page
    asked with a method it does not take, a 405 page with ``Allow``. Declared last: every
    page above matches first."""
    pages = [("", route) for route in router.routes] + [
        (PATH, route)
        for included in (
            routes_withdrawals.router,
            routes_links.router,
            routes_traffic.router,
            routes_postbacks.router,
        )
        for route in included.routes
    ]
    allowed = web.methods_taken(request.url.path, pages, no_such_page)
    if allowed:
        return web.wrong_method(request, allowed)
    raise NotFound("there is no such dashboard page")
