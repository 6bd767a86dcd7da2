"""The Links pages: the list of the publisher's links (code, short URL, destination, status,
created) with their status buttons, and one link's page with the change of destination.
Every form that changes something is a POST carrying the session's CSRF token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo
from html import escape
from urllib.parse import quote, urlencode

from app.dashboard.inputs import plural
from app.dashboard.layout import attr, notice, page, table
from app.dashboard.link_actions import LinkPage, Show
from app.dashboard.sessions import PATH
from app.links.model import Link, LinkStatus
from app.links.urls import MAX_DESTINATION_BYTES

SHOW_TEXT = {
    Show.current: "Active and disabled",
    Show.archived: "Archived",
    Show.all: "All",
}
STATUS_TEXT = {
    LinkStatus.active: "active",
    LinkStatus.disabled: "disabled (404)",
    LinkStatus.archived: "archived (410)",
}
# The status buttons a link offers, by its status: (action, label).
BUTTONS = {
    LinkStatus.active: (("disable", "Disable"), ("archive", "Archive")),
    LinkStatus.disabled: (("restore", "Restore"), ("archive", "Archive")),
    LinkStatus.archived: (("restore", "Restore"),),
}


@dataclass(frozen=True)
class Frame:
    """What every Links page needs besides its own content."""

    publisher_name: str
    csrf: str
    base_url: str  # the short URLs' base
    tz: tzinfo  # the period time zone: creation days are on its clock
    zone: str


def link_path(link: Link) -> str:
    return f"{PATH}/links/{quote(link.code)}"


def status_forms(link: Link, frame: Frame, back: str) -> str:
    """The status buttons of ``link``; ``back`` is where the page returns after."""
    return "".join(
        f'<form class="inline" method="post" action="{attr(link_path(link))}">'
        f'<input type="hidden" name="csrf" value="{attr(frame.csrf)}">'
        f'<input type="hidden" name="action" value="{action}">'
        f'<input type="hidden" name="back" value="{attr(back)}">'
        f'<button type="submit" class="quiet" data-action="{action}">{label}</button></form>'
        for action, label in BUTTONS[link.status]
    )


def _row(link: Link, frame: Frame, back: str) -> str:
    short = f"{frame.base_url}/e/{link.code}"
    created = link.created_at.astimezone(frame.tz)
    get = f"{PATH}/links/build?{urlencode({'code': link.code})}"
    return (
        f'<tr data-code="{attr(link.code)}" data-status="{link.status}">'
        f'<td><a href="{attr(link_path(link))}">{escape(link.code)}</a></td>'
        f"<td>{escape(short)}</td>"
        f'<td class="wrap">{escape(link.destination)}</td>'
        f'<td class="status-{link.status}">{STATUS_TEXT[link.status]}</td>'
        f"<td>{created:%Y-%m-%d}</td>"
        f'<td class="actions"><a class="button" href="{attr(get)}">Get link</a> '
        f"{status_forms(link, frame, back)}</td></tr>"
    )


def _tabs(show: Show) -> str:
    current = ' aria-current="true"'
    tabs = "".join(
        f'<a href="{PATH}/links?show={s}"{current if s is show else ""}>{SHOW_TEXT[s]}</a>'
        for s in Show
    )
    return f'<nav class="tabs" aria-label="Which links">{tabs}</nav>'


def list_page(found: LinkPage, frame: Frame, outcome: str = "") -> str:
    back = f"{PATH}/links?show={found.show}"
    only = "" if found.status is None else f"&amp;status={found.status}"
    rows = [_row(link, frame, back) for link in found.links]
    nothing = {
        Show.current: "No links yet: create one with the API (POST /api/v1/links).",
        Show.archived: "No archived links.",
        Show.all: "No links yet: create one with the API (POST /api/v1/links).",
    }[found.show]
    more = ""
    if found.next_after is not None:
        more = (
            f'<p><a id="next-page" href="{PATH}/links?show={found.show}{only}&amp;after='
            f'{found.next_after}">Next {plural(len(found.links), "link")}</a></p>'
        )
    if found.status is not None:  # narrowed as the API's ?status= narrows
        more = f'<p class="hint" id="only">Only {STATUS_TEXT[found.status]} links.</p>{more}'
    head = ("Code", "Short URL", "Destination", "Status", f"Created ({frame.zone})", "Actions")
    return page(
        "Links",
        frame.publisher_name,
        frame.csrf,
        "links",
        f"<h2>Links</h2>{notice(outcome) if outcome else ''}"
        f'<p><a class="button" id="builder" href="{PATH}/links/build">Get Links: a '
        "tracking URL and its QR code</a></p>"
        f"{_tabs(found.show)}{table('links', head, rows, nothing)}{more}",
    )


def link_page(
    link: Link, frame: Frame, outcome: str = "", *, error: bool = False, typed: str = ""
) -> str:
    """One link: its facts, the change of destination (``typed``: what was sent, shown
    again after a refusal), and the status buttons."""
    short = f"{frame.base_url}/e/{link.code}"
    facts: Sequence[tuple[str, str]] = (
        ("Short URL", short),
        ("Destination", link.destination),
        ("Status", STATUS_TEXT[link.status]),
        (f"Created ({frame.zone})", f"{link.created_at.astimezone(frame.tz):%Y-%m-%d %H:%M}"),
    )
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    told = notice(outcome, error=error, key="outcome") if outcome else ""
    path = link_path(link)
    return page(
        f"Link {link.code}",
        frame.publisher_name,
        frame.csrf,
        "links",
        f"<h2>Link {escape(link.code)}</h2>{told}"
        f'<section class="panel"><dl class="facts" id="link-facts">{rows}</dl>'
        f'<p><a class="button" href="{PATH}/links/build?{attr(urlencode({"code": link.code}))}">'
        f"Get link</a> {status_forms(link, frame, path)}</p></section>"
        f'<section class="panel"><h2>Change the destination</h2>'
        f'<form class="stack" method="post" action="{attr(path)}">'
        f'<input type="hidden" name="csrf" value="{attr(frame.csrf)}">'
        '<input type="hidden" name="action" value="destination">'
        '<label for="destination">New destination (a URL on an allowed host)</label>'
        f'<input id="destination" name="destination" type="url" required '
        f'maxlength="{MAX_DESTINATION_BYTES}" value="{attr(typed or link.destination)}">'
        '<button type="submit">Change destination</button></form>'
        '<p class="hint">The next click goes to the new destination; clicks already made '
        "keep theirs.</p></section>"
        f'<p><a href="{PATH}/links">Back to the links</a></p>',
    )
