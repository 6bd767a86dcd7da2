"""The dashboard's Traffic page (``/dashboard/traffic``): the publisher's clicks broken down by
one dimension over a range of days, narrowed by filters (``breakdown.py``, rendered by
``breakdown_page.py``). Its query: ``by`` (country by default), ``from`` and ``to`` (as the
overview's: the last 30 days by default, at most 366), and the exact filters ``link``, ``af``,
``cn``, ``cv``, ``dp``, ``country``, ``device``, ``browser``, ``os``, ``referrer``,
``language``. A bad value answers the 400 page saying why."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from app.api.deps import NowDep, ResourcesDep
from app.dashboard import breakdown, inputs, web
from app.dashboard.breakdown_page import breakdown_page
from app.traffic.days import day_of

router = APIRouter(route_class=web.PageRoute)

Text = Annotated[str | None, Query()]
FromText = Annotated[str | None, Query(alias="from")]
ToText = Annotated[str | None, Query(alias="to")]


class FilterTexts:
    """The Traffic page's filters as the query gave them (``breakdown.FILTERS``; its CSV
    download takes the same): ``given`` by name, None for one not given. Read, and refused
    in words, by ``breakdown.asked``."""

    def __init__(
        self,
        link: Text = None,
        af: Text = None,
        cn: Text = None,
        cv: Text = None,
        dp: Text = None,
        country: Text = None,
        device: Text = None,
        browser: Text = None,
        os: Text = None,
        referrer: Text = None,
        language: Text = None,
    ) -> None:
        self.given = {
            "link": link,
            "af": af,
            "cn": cn,
            "cv": cv,
            "dp": dp,
            "country": country,
            "device": device,
            "browser": browser,
            "os": os,
            "referrer": referrer,
            "language": language,
        }


@router.get("/traffic")
async def traffic_breakdown(
    request: Request,
    resources: ResourcesDep,
    filters: Annotated[FilterTexts, Depends()],
    now: NowDep,
    first: FromText = None,
    last: ToText = None,
    by: Text = None,
) -> Response:
    session = await web.current_session(request, resources)
    if session is None:
        return web.to_login()
    today = day_of(now, resources.settings.period_tz)
    with inputs.query_checked():
        shown = inputs.shown_days(first, last, today)
        wanted = breakdown.asked(by, filters.given)
        found = await breakdown.breakdown(
            resources, session.publisher_id, session.csrf, *shown, wanted
        )
    return web.html(breakdown_page(found))
