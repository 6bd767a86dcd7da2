"""The dashboard's Postbacks page: GET shows the endpoints and the delivery log (filters
``status``, ``event``, ``endpoint``; cursor ``before``); three POSTs (CSRF-checked) replay
one delivery, replay the failed ones, or send a test event to an endpoint, then redirect
back to the page as it was with the outcome (so a reload does not repeat them). A bad
query or form value answers a 400 page saying why; another publisher's delivery or
endpoint, or an id that is not a number, a 404 page, with nothing changed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.api.deps import ResourcesDep
from app.dashboard import postback_log, web
from app.dashboard.inputs import plural
from app.dashboard.postback_log import LogFilter, filter_of, number_of
from app.dashboard.postbacks_page import page_url, postbacks_page
from app.errors import NotFound
from app.links.model import echoed

router = APIRouter(route_class=web.PageRoute)

Text = Annotated[str | None, Query()]


def _outcome(done: str | None, delivery: int | None, count: int | None) -> str:
    """The words for a form's outcome, as its redirect named it."""
    if done == "replayed":
        return (
            f"Delivery {delivery} is queued again, with the same event id: it is sent within "
            "seconds while the sender runs."
        )
    if done == "pending":
        return f"Delivery {delivery} is pending already: it is sent when due, nothing to replay."
    if done == "replayed_failed":
        if not count:
            return "No failed delivery to replay: nothing was changed."
        return f"{plural(count, 'failed delivery', 'failed deliveries')} queued again."
    if done == "test":
        return (
            f"A test event is queued as delivery {delivery}: it is sent within seconds while "
            "the sender runs."
        )
    return ""


@router.get("/postbacks")
async def postbacks(
    request: Request,
    resources: ResourcesDep,
    status: Text = None,
    event: Text = None,
    endpoint: Text = None,
    before: Text = None,
    done: Text = None,
    delivery: Text = None,
    count: Text = None,
) -> Response:
    session = await web.current_session(request, resources)
    if session is None:
        return web.to_login()
    filters = filter_of(status, event, endpoint)
    cursor = number_of(before, "before", "the id of the last delivery shown")
    said = _outcome(
        postback_log.done_of(done),
        number_of(delivery, "delivery", "a delivery's id"),
        postback_log.count_of(count),
    )
    view = await postback_log.postbacks_view(resources, session, filters, cursor)
    return web.html(postbacks_page(view, said))


def _back(form: dict[str, str]) -> tuple[LogFilter, int | None]:
    """The page the form was on: its filters and cursor, read as the page reads them (never
    an address taken from the form). Read before the change, so a bad value changes nothing."""
    filters = filter_of(form.get("status"), form.get("event"), form.get("endpoint"))
    return filters, number_of(form.get("before"), "before", "the id of the last delivery shown")


def _redirect(back: tuple[LogFilter, int | None], **outcome: str | int) -> RedirectResponse:
    filters, before = back
    return RedirectResponse(
        page_url(filters, before=before, **outcome),
        status_code=303,
        headers={"Cache-Control": "no-store"},
    )


def _id(text: str, what: str) -> int:
    """A path's id; anything else answers like an id that is not the publisher's (404)."""
    if not (text.isascii() and text.isdigit()) or len(text) > postback_log.MAX_DIGITS:
        raise NotFound(f"you have no {what} {echoed(text)!r}")
    return int(text)


@router.post("/postbacks/deliveries/{delivery_id}/replay")
async def replay_delivery(delivery_id: str, request: Request, resources: ResourcesDep) -> Response:
    posted = await web.posted_form(request, resources)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    back, found = _back(form), _id(delivery_id, "delivery")
    replayed = await postback_log.replay_one(resources, session, found)
    return _redirect(back, done="replayed" if replayed else "pending", delivery=found)


@router.post("/postbacks/replay-failed")
async def replay_failed(request: Request, resources: ResourcesDep) -> Response:
    """Every failed delivery of the form's endpoint and event (its status filter aside: a
    replay is of failed ones), back to the page from its first."""
    posted = await web.posted_form(request, resources)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    filters, _ = _back(form)
    replayed = await postback_log.replay_failed(resources, session, filters)
    return _redirect((filters, None), done="replayed_failed", count=replayed)


@router.post("/postbacks/endpoints/{endpoint_id}/test")
async def send_test(endpoint_id: str, request: Request, resources: ResourcesDep) -> Response:
    posted = await web.posted_form(request, resources)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    (filters, _), found = _back(form), _id(endpoint_id, "endpoint")
    made = await postback_log.send_test(resources, session, found)
    # Back to the newest page: the new delivery is the newest of all.
    return _redirect((filters, None), done="test", delivery=made)
