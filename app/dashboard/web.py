"""The dashboard's HTTP plumbing: its pages' headers, the signed-in session of a request,
cookies, forms, downloads, and the HTML page an error answers with."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from app.core.resources import Resources
from app.dashboard import pages
from app.dashboard.sessions import COOKIE, PATH, DashboardSession, Sessions
from app.errors import ClickTrackError
from app.reports.exports import MEDIA_TYPE, CsvExport

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


def html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def problem(error: ClickTrackError) -> HTMLResponse:
    """An error as a page, with the status the API would answer."""
    return html(pages.error_page(error.describe()), error.status)


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
    """A URL-encoded form's fields (the first value of each); anything else: none."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    text = (await request.body()).decode("utf-8", "replace")
    fields = parse_qs(text, max_num_fields=10)
    return {name: values[0] for name, values in fields.items()}
