"""The dashboard's withdrawals page: GET shows it, POST requests a withdrawal (CSRF-checked)
and redirects back to it with the outcome (so a reload does not request again); a refusal or
a bad amount answers the page itself with its 4xx status and the reason in plain words."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.api.deps import NowDep, ResourcesDep
from app.dashboard import inputs, web, withdraw
from app.dashboard.sessions import PATH
from app.dashboard.withdraw_page import requested_text, withdrawals_page
from app.errors import ClickTrackError, Conflict, InvalidInput

router = APIRouter(route_class=web.PageRoute)


@router.get("/withdrawals")
async def withdrawals_form(
    request: Request,
    resources: ResourcesDep,
    now: NowDep,
    requested: Annotated[str | None, Query()] = None,
) -> Response:
    session = await web.current_session(request, resources)
    if session is None:
        return web.to_login()
    if requested is not None and not (requested.isascii() and requested.isdigit()):
        raise inputs.BadQuery("expected a withdrawal's number", field="requested")
    view = await withdraw.withdrawals_view(resources, session, now)
    made = [w for w in view.withdrawals if str(w.id) == requested]
    outcome = requested_text(made[0], view) if made else ""
    return web.html(withdrawals_page(view, outcome))


@router.post("/withdrawals")
async def request_withdrawal(request: Request, resources: ResourcesDep, now: NowDep) -> Response:
    posted = await web.posted_form(request, resources)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    failure: ClickTrackError
    try:
        made = await withdraw.request(resources, session, inputs.amount(form.get("amount")), now)
    except (InvalidInput, Conflict) as exc:  # a bad amount, or a rule refusing the request
        failure = exc
    else:
        return RedirectResponse(
            f"{PATH}/withdrawals?requested={made.id}",
            status_code=303,
            headers={"Cache-Control": "no-store"},
        )
    view = await withdraw.withdrawals_view(resources, session, now)
    said = f"No withdrawal was requested: {failure.describe()}."
    return web.html(withdrawals_page(view, said, refused=True), failure.status)
