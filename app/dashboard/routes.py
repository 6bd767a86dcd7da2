"""The publisher dashboard: sign in with an API key, see the overview, charts and tables,
download the CSVs. Pages are rendered on the server (``pages.py``); the session is in
``sessions.py``; the numbers come from the same report functions as the API, and the
downloads are the API's own CSV routes, called for the signed-in publisher."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from importlib import resources as package_files
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from app.accounts.apikeys import Principal, Role, authenticate
from app.accounts.publishers import get_publisher
from app.api import reports as api_reports
from app.api.deps import ResourcesDep
from app.core.db import Pool
from app.core.resources import Resources
from app.dashboard import pages
from app.dashboard.sessions import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    LOGIN_CSRF_TTL_S,
    PATH,
    SESSION_TTL_S,
    DashboardSession,
    Sessions,
    same_token,
)
from app.reports import income, overview
from app.reports.income import PeriodIncome
from app.traffic import counts, days
from app.traffic.counts import Dimension, TrafficQuery, TrafficRow

router = APIRouter(prefix=PATH, include_in_schema=False)

TOP_IDS = 10
INCOME_PERIODS = 6
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
DateParam = Annotated[date | None, Query()]


def _sessions(resources: Resources) -> Sessions:
    secret = resources.settings.cookie_secret.get_secret_value().encode()
    return Sessions(resources.redis, resources.keys, secret)


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _set_cookie(response: Response, resources: Resources, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=PATH,
        secure=resources.settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )


def _to_login() -> RedirectResponse:
    return RedirectResponse(f"{PATH}/login", status_code=303, headers={"Cache-Control": "no-store"})


async def _session(request: Request, resources: Resources) -> DashboardSession | None:
    async with resources.pool.acquire() as conn:
        return await _sessions(resources).find(conn, request.cookies.get(COOKIE))


def _principal(session: DashboardSession) -> Principal:
    return Principal(session.key_id, Role.publisher, session.publisher_id)


async def _form(request: Request) -> dict[str, str]:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    text = (await request.body()).decode("utf-8", "replace")
    fields = parse_qs(text, max_num_fields=10)
    return {name: values[0] for name, values in fields.items()}


# -- signing in and out ----------------------------------------------------------------------


def _login_form(resources: Resources, error: str | None = None, status: int = 200) -> Response:
    token = _sessions(resources).login_token()
    response = _html(pages.login_page(token, error), status)
    _set_cookie(response, resources, LOGIN_CSRF_COOKIE, token, LOGIN_CSRF_TTL_S)
    return response


@router.get("/login")
async def login_form(request: Request, resources: ResourcesDep) -> Response:
    if await _session(request, resources) is not None:
        return RedirectResponse(PATH, status_code=303)
    return _login_form(resources)


@router.post("/login")
async def login(request: Request, resources: ResourcesDep) -> Response:
    form = await _form(request)
    sessions = _sessions(resources)
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
    _set_cookie(response, resources, COOKIE, cookie, SESSION_TTL_S)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PATH)
    return response


@router.post("/logout")
async def logout(request: Request, resources: ResourcesDep) -> Response:
    session = await _session(request, resources)
    if session is None:
        return _to_login()
    if not same_token(session.csrf, (await _form(request)).get("csrf")):
        return _html(pages.layout("Refused", "<main><p>Refused: stale form.</p></main>"), 403)
    await _sessions(resources).delete(session.session_id)
    response = _to_login()
    response.delete_cookie(COOKIE, path=PATH)
    return response


# -- the page --------------------------------------------------------------------------------


def _range(first: date | None, last: date | None) -> tuple[date, date]:
    """The days to show: the last 30 by default, at most ``traffic.MAX_DAYS``."""
    last = min(max(last or datetime.now(UTC).date(), counts.FIRST_DAY), counts.LAST_DAY)
    first = first or last - timedelta(days=api_reports.DEFAULT_DAYS - 1)
    first, last = min(first, last), max(first, last)
    first = max(first, last - timedelta(days=counts.MAX_DAYS - 1), counts.FIRST_DAY)
    return first, last


@dataclass(frozen=True)
class _Breakdowns:
    publisher_name: str
    by_day: list[TrafficRow]
    by_af: list[TrafficRow]
    orders_by_day: dict[date | str | None, overview.OrderCounts]
    orders_by_af: dict[date | str | None, overview.OrderCounts]


async def _breakdowns(pool: Pool, owner: int, first: date, last: date) -> _Breakdowns:
    async with pool.acquire() as conn:
        publisher = await get_publisher(conn, owner)
        assert publisher is not None  # a key's publisher is never deleted
        return _Breakdowns(
            publisher.name,
            await counts.traffic_report(conn, TrafficQuery(owner, first, last, (Dimension.day,))),
            await counts.traffic_report(conn, TrafficQuery(owner, first, last, (Dimension.af,))),
            await overview.order_counts_by(conn, owner, first, last, Dimension.day),
            await overview.order_counts_by(conn, owner, first, last, Dimension.af),
        )


async def _periods(pool: Pool, owner: int, tz: tzinfo, now: datetime) -> list[PeriodIncome]:
    async with pool.acquire() as conn:
        periods = income.default_periods(now, tz, INCOME_PERIODS)
        return await income.income_by_period(conn, owner, *periods, tz, now)


async def _view(
    session: DashboardSession, resources: Resources, first: date, last: date
) -> pages.DashboardView:
    """Everything the page shows, read on several connections at once."""
    tz = resources.settings.period_tz
    now = datetime.now(UTC)
    owner, pool = session.publisher_id, resources.pool
    found, parts, periods = await asyncio.gather(
        overview.overview(pool, owner, first, last, tz, now),
        _breakdowns(pool, owner, first, last),
        _periods(pool, owner, tz, now),
    )
    none = overview.OrderCounts(0, 0, Decimal(0))
    top = sorted(parts.by_af, key=lambda r: (-r.billable, -r.clicks, r.af or ""))[:TOP_IDS]
    return pages.DashboardView(
        publisher_name=parts.publisher_name,
        csrf=session.csrf,
        first=first,
        last=last,
        overview=found,
        days=days.days_of(first, last),
        traffic={row.day: row for row in parts.by_day if row.day is not None},
        orders={d: c for d, c in parts.orders_by_day.items() if isinstance(d, date)},
        top_ids=[
            pages.TrackingIdRow(
                r.af,
                r.clicks,
                r.unique_clicks,
                r.billable,
                parts.orders_by_af.get(r.af, none).orders,
                parts.orders_by_af.get(r.af, none).completed,
            )
            for r in top
        ],
        periods=periods,
    )


@router.get("")
async def dashboard(
    request: Request,
    resources: ResourcesDep,
    first: Annotated[date | None, Query(alias="from")] = None,
    last: Annotated[date | None, Query(alias="to")] = None,
) -> Response:
    session = await _session(request, resources)
    if session is None:
        return _to_login()
    first, last = _range(first, last)
    view = await _view(session, resources, first, last)
    return _html(pages.dashboard_page(view))


@functools.cache
def _stylesheet() -> bytes:
    return (package_files.files("app.dashboard") / "static" / "dashboard.css").read_bytes()


@router.get("/static/dashboard.css")
async def stylesheet() -> Response:
    return Response(
        _stylesheet(),
        media_type="text/css; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


# -- downloads: the API's CSV routes, for the signed-in publisher ----------------------------


@router.get("/export/orders.csv")
async def export_orders(
    request: Request,
    resources: ResourcesDep,
    first: Annotated[date | None, Query(alias="from")] = None,
    last: Annotated[date | None, Query(alias="to")] = None,
    bom: bool = False,
) -> Response:
    session = await _session(request, resources)
    if session is None:
        return _to_login()
    return await api_reports.live_order_tracking_csv(
        _principal(session), resources, first, last, bom=bom
    )


@router.get("/export/traffic.csv")
async def export_traffic(
    request: Request,
    resources: ResourcesDep,
    first: Annotated[date | None, Query(alias="from")] = None,
    last: Annotated[date | None, Query(alias="to")] = None,
    group_by: api_reports.GroupBy = "day",
    bom: bool = False,
) -> Response:
    session = await _session(request, resources)
    if session is None:
        return _to_login()
    response: StreamingResponse = await api_reports.traffic_csv(
        _principal(session), resources, first, last, group_by, bom=bom
    )
    return response


@router.get("/export/income.csv")
async def export_income(request: Request, resources: ResourcesDep, bom: bool = False) -> Response:
    session = await _session(request, resources)
    if session is None:
        return _to_login()
    return await api_reports.income_csv(_principal(session), resources, bom=bom)
