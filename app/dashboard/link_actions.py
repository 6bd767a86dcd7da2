"""The publisher's links as the dashboard reads and changes them, through ``app.links``'s
store and builder (never the HTTP API).

A change (destination, disable, archive, restore) runs as the API's ``PATCH /links/{code}``
does: the link's row locked, the change and its audit entry (``link.update``, before and
after) in one transaction, then, after the commit, ``mirror.publish_change`` so every
redirect worker follows it at once. Another publisher's link answers like a missing one."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.audit.log import api_actor, record
from app.core.resources import Resources
from app.dashboard.inputs import BadQuery
from app.dashboard.sessions import DashboardSession
from app.errors import NotFound
from app.links import builder, mirror
from app.links import store as link_store
from app.links.model import Link, LinkStatus, echoed, validate_destination

PAGE_SIZE = 50
PICKER_SIZE = 500  # the builder's list of links to pick from


class Show(StrEnum):
    """Which links the list shows."""

    current = "current"  # active and disabled: the store's default
    archived = "archived"
    all = "all"


_STATUSES = {
    Show.current: (),
    Show.archived: (LinkStatus.archived,),
    Show.all: tuple(LinkStatus),
}

# A status form's action: the status it sets, and what the page then says.
ACTIONS = {
    "disable": (LinkStatus.disabled, "Disabled: the link answers 404 until it is restored."),
    "archive": (
        LinkStatus.archived,
        "Archived: the link answers 410 and leaves the list; its clicks and reports are kept.",
    ),
    "restore": (LinkStatus.active, "Restored: the link redirects again."),
}


# The outcomes a change's redirect names (``?done=``), beside the status actions.
DONE = ("destination", "unchanged", *ACTIONS)


@dataclass(frozen=True)
class LinkPage:
    links: list[Link]
    show: Show
    next_after: int | None  # the cursor of the next page; None on the last
    status: LinkStatus | None = None  # only the links of this status (as the API's ?status=)


def short_url(link: Link, resources: Resources) -> str:
    return f"{resources.settings.public_base_url}/e/{link.code}"


def show_of(text: str | None) -> Show:
    try:
        return Show(text or Show.current)
    except ValueError:
        raise BadQuery("expected current, archived or all", field="show") from None


def status_of(text: str | None) -> LinkStatus | None:
    """The ``status`` a list is narrowed to (as the API's ``GET /links?status=``)."""
    if not text:
        return None
    try:
        return LinkStatus(text)
    except ValueError:
        raise BadQuery("expected active, disabled or archived", field="status") from None


def done_of(text: str | None) -> str | None:
    """The outcome a page's ``done`` names (set by the dashboard's own redirect)."""
    if text is None:
        return None
    if text not in DONE:
        raise BadQuery(f"expected one of {', '.join(DONE)}", field="done")
    return text


def cursor_of(text: str | None) -> int:
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise BadQuery("expected the number of the last link shown", field="after")
    return int(text)


async def list_page(
    resources: Resources, owner: int, show: Show, after: int, status: LinkStatus | None = None
) -> LinkPage:
    """A page of the publisher's links, oldest first, after the cursor; ``status``: only
    the links of that status (whatever ``show`` says)."""
    statuses = _STATUSES[show] if status is None else (status,)
    where = link_store.LinkFilter(statuses=statuses)
    async with resources.pool.acquire() as conn:
        found = await link_store.list_links(
            conn, [owner], after=after, limit=PAGE_SIZE, where=where
        )
    return LinkPage(found, show, found[-1].id if len(found) == PAGE_SIZE else None, status)


async def active_links(resources: Resources, owner: int) -> list[Link]:
    """The links the builder offers: active ones (a tracking URL of any other would not
    redirect), the first ``PICKER_SIZE``."""
    where = link_store.LinkFilter(statuses=(LinkStatus.active,))
    async with resources.pool.acquire() as conn:
        return await link_store.list_links(conn, [owner], limit=PICKER_SIZE, where=where)


def _owned(link: Link | None, owner: int, code: str) -> Link:
    if link is None or link.publisher_id != owner:
        raise NotFound(f"you have no link with the code {echoed(code)!r}")
    return link


async def find(resources: Resources, owner: int, code: str) -> Link:
    """The publisher's link of ``code``; ``NotFound`` otherwise (whoever else owns it)."""
    async with resources.pool.acquire() as conn:
        return _owned(await link_store.get_link(conn, code), owner, code)


def _audited(link: Link) -> dict[str, Any]:
    return {"destination": link.destination, "status": link.status}


async def change(
    resources: Resources,
    session: DashboardSession,
    code: str,
    *,
    status: LinkStatus | None = None,
    destination: str | None = None,
) -> tuple[Link, bool]:
    """Set the link's status and/or destination (checked as on creation: ``LinkError``).
    Returns the link and whether anything changed (asking for what it already is writes
    nothing, no audit entry either)."""
    if destination is not None:
        destination = validate_destination(destination, resources.settings.allowed_hosts)
    actor = api_actor(session.key_id, "publisher", session.publisher_id, via="dashboard")
    async with resources.pool.acquire() as conn, conn.transaction():
        found = await link_store.get_link(conn, code, for_update=True)
        before = _owned(found, session.publisher_id, code)
        if (status in (None, before.status)) and (destination in (None, before.destination)):
            return before, False
        link = await link_store.update_link(conn, before.id, status=status, destination=destination)
        await record(
            conn,
            actor,
            "link.update",
            "link",
            link.code,
            before=_audited(before),
            after=_audited(link),
            publisher_id=link.publisher_id,
        )
    # After the commit: a worker must never follow a change the database rolled back.
    await mirror.publish_change(
        resources.redis, resources.keys, link, legacy=resources.settings.link_mirror_legacy_writes
    )
    return link, True


@dataclass(frozen=True)
class Built:
    url: str
    qr_svg: str  # an SVG document (its XML declaration included)


def build(link: Link, resources: Resources, values: dict[str, str | None]) -> Built:
    """The tracking URL of ``link`` with the tracking strings ``values`` (af, cn, cv, dp) and
    its QR code. ``InvalidInput`` naming the field for a value the redirect would drop."""
    url = builder.tracking_url(short_url(link, resources), **values)
    return Built(url, builder.qr_svg(url))
