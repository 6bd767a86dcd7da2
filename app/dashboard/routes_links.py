"""The dashboard's Links pages: the list, one link's page, the builder ("Get Links"), and the
POST that changes a link (destination, disable, archive, restore; CSRF-checked). A change
redirects to the page it came from with its outcome, so a reload does not repeat it; a bad
destination answers the link's page with 422 and the reason, another publisher's or an
unknown code a 404 page; a bad query value (``show``, ``status``, ``after``, ``done``, a
tracking string) a 400 page saying why."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.accounts.publishers import get_publisher
from app.api.deps import ResourcesDep
from app.core.resources import Resources
from app.dashboard import link_actions, web
from app.dashboard.build_page import Asked, builder_page
from app.dashboard.inputs import BadQuery
from app.dashboard.link_actions import ACTIONS
from app.dashboard.links_page import Frame, link_page, list_page
from app.dashboard.sessions import PATH, DashboardSession
from app.errors import InvalidInput, NotFound
from app.links.model import LinkStatus
from app.traffic.days import zone_name

router = APIRouter(route_class=web.PageRoute)

Text = Annotated[str | None, Query()]
# Where a change may send the browser back to: a Links page of this dashboard, nothing else
# (a form's "back" is input: never an open redirect).
_BACK = re.compile(rf"{PATH}/links(\?show=(current|archived|all)|/[A-Za-z0-9]{{1,32}})?")


def _done_text(done: str | None, destination: str) -> str:
    if done == "destination":
        return f"Destination changed: the next click goes to {destination}"
    if done == "unchanged":
        return "Nothing to change: the link already is as asked."
    return ACTIONS[done][1] if done in ACTIONS else ""


async def _frame(resources: Resources, session: DashboardSession) -> Frame:
    async with resources.pool.acquire() as conn:
        publisher = await get_publisher(conn, session.publisher_id)
    assert publisher is not None  # a key's publisher is never deleted
    tz = resources.settings.period_tz
    return Frame(
        publisher.name, session.csrf, resources.settings.public_base_url, tz, zone_name(tz)
    )


@router.get("/links")
async def links(
    request: Request,
    resources: ResourcesDep,
    show: Text = None,
    after: Text = None,
    done: Text = None,
    status: Text = None,
) -> Response:
    session = await web.current_session(request, resources)
    if session is None:
        return web.to_login()
    which, cursor = link_actions.show_of(show), link_actions.cursor_of(after)
    only, outcome = link_actions.status_of(status), link_actions.done_of(done)
    found = await link_actions.list_page(resources, session.publisher_id, which, cursor, only)
    frame = await _frame(resources, session)
    return web.html(list_page(found, frame, _done_text(outcome, "")))


@router.get("/links/build")
async def build(
    request: Request,
    resources: ResourcesDep,
    code: Text = None,
    af: Text = None,
    cn: Text = None,
    cv: Text = None,
    dp: Text = None,
) -> Response:
    session = await web.current_session(request, resources)
    if session is None:
        return web.to_login()
    choices = await link_actions.active_links(resources, session.publisher_id)
    frame = await _frame(resources, session)
    asked = Asked(code or "", {"af": af, "cn": cn, "cv": cv, "dp": dp})
    if not code:  # the empty form
        return web.html(builder_page(choices, frame, asked))
    link = await link_actions.find(resources, session.publisher_id, code)
    try:
        built = link_actions.build(link, resources, asked.values)
    except InvalidInput as exc:  # a value of the query the redirect would drop: 400
        said = f"No link was made: {exc.describe()}."
        page = builder_page(choices, frame, asked, problem=(exc.field, said))
        return web.html(page, BadQuery.status)
    return web.html(builder_page(choices, frame, asked, built))


@router.get("/links/{code}")
async def one_link(
    code: str, request: Request, resources: ResourcesDep, done: Text = None
) -> Response:
    session = await web.current_session(request, resources)
    if session is None:
        return web.to_login()
    outcome = link_actions.done_of(done)
    link = await link_actions.find(resources, session.publisher_id, code)
    frame = await _frame(resources, session)
    return web.html(link_page(link, frame, _done_text(outcome, link.destination)))


def _asked_change(form: dict[str, str]) -> tuple[str, LinkStatus | None, str | None]:
    """The action a form asks for, and the status or destination it sets."""
    action = form.get("action", "")
    if action == "destination":
        destination = form.get("destination", "").strip()
        if not destination:
            raise InvalidInput("is required: the URL the link should send to", field="destination")
        return action, None, destination
    if action in ACTIONS:
        return action, ACTIONS[action][0], None
    raise InvalidInput("expected destination, disable, archive or restore", field="action")


@router.post("/links/{code}")
async def change_link(code: str, request: Request, resources: ResourcesDep) -> Response:
    posted = await web.posted_form(request, resources)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    try:
        action, status, destination = _asked_change(form)
        link, changed = await link_actions.change(
            resources, session, code, status=status, destination=destination
        )
    except NotFound as exc:
        return web.problem(exc)
    except InvalidInput as exc:  # a bad action or destination: the link's page says why
        try:
            link = await link_actions.find(resources, session.publisher_id, code)
        except NotFound as missing:
            return web.problem(missing)
        said = f"Nothing was changed: {exc.describe()}."
        frame = await _frame(resources, session)
        page = link_page(link, frame, said, error=True, typed=form.get("destination", ""))
        return web.html(page, exc.status)
    back = form.get("back", "")
    if not _BACK.fullmatch(back):
        back = f"{PATH}/links/{link.code}"
    joiner = "&" if "?" in back else "?"
    return RedirectResponse(
        f"{back}{joiner}done={action if changed else 'unchanged'}",
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )
