"""Publisher routes: create, list (with filters), get and change links (destination, status,
expiry and rules; archive and restore), and a link's tracking URL with its QR code.

Who may touch which link is ``app.api.scope``'s: a publisher key its own links, a network's
key its members' too, an admin key any. A bad destination or code raises ``LinkError`` (422),
a custom code in use ``CodeTaken`` (409), a bad tracking string ``InvalidInput`` (422), a bad
rule ``LinkError`` naming its place (``rules[2].in[0]``, 422): they
reach the error handler (``app/api/errors.py``) as raised. Every change writes an audit entry
(``link.create``, ``link.update``) in the transaction that makes it."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from app.api.bodies import JsonRoute
from app.api.deps import NowDep, PrincipalDep, ResourcesDep, actor_of
from app.api.params import PRINTABLE, BodyId, Cursor, Id, Instant
from app.api.scope import acting_for, publishers_seen, visible_link
from app.audit.log import record
from app.core.hosts import normalise_host
from app.core.resources import Resources
from app.errors import InvalidInput
from app.links import builder, mirror
from app.links import model as link_model
from app.links import rules as link_rules
from app.links import store as link_store
from app.links.model import CODE_PATTERN, Link, LinkStatus, echoed
from app.links.urls import MAX_DESTINATION_BYTES

router = APIRouter(route_class=JsonRoute, tags=["links"])

# Characters of a ``q`` search: enough for any code (32) and a recognisable part of a URL,
# short enough that a substring scan stays cheap.
MAX_QUERY_LENGTH = 100
# A host name's longest form (RFC 1035: 253 characters written out).
MAX_HOST_LENGTH = 253

RULES_DOC = (
    "In order, at most 10; the first that matches a click sends it to its destination "
    "instead of the link's. Each: `when` (`country`, `device`, `os`, `language` or `param`), "
    "`in` (at most 50 values: ISO country codes; desktop, mobile, tablet, bot, other; OS "
    "families such as iOS, Android, Windows, Mac OS X, any case; language subtags such as "
    "en; a query parameter's exact values), `destination` (checked as the link's), and for "
    "`param` the parameter's `name`. "
    'Example: `[{"when": "country", "in": ["DE", "AT"], '
    '"destination": "https://shop.example.com/de"}]`.'
)
# The rules are read as any JSON and checked by app.links.rules alone, whose messages name
# each rule's place (rules[2].in[0]) in words.
RawRules = Any

PUBLISHER_ID_DOC = (
    "Admin keys: the publisher (required). A network's key: itself or one of its members "
    "(default: itself)."
)


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    destination: str = Field(max_length=MAX_DESTINATION_BYTES)
    code: str | None = Field(default=None, pattern=CODE_PATTERN)
    expires_at: Instant | None = None
    publisher_id: BodyId | None = Field(default=None, description=PUBLISHER_ID_DOC)
    rules: RawRules = Field(default_factory=list, description=RULES_DOC)


class LinkPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    destination: str | None = Field(
        default=None,
        max_length=MAX_DESTINATION_BYTES,
        description="The new destination, checked as on creation; the next click goes there.",
    )
    status: LinkStatus | None = Field(
        default=None,
        description="`archived`: 410 like an expired link, hidden from the default list, "
        "history kept; `active` restores.",
    )
    expires_at: Instant | None = Field(
        default=None, description="When the link stops redirecting (410); null clears it."
    )
    rules: RawRules = Field(
        default=None,
        description="Replaces the link's rules (`[]` removes them); the next click obeys "
        "them. " + RULES_DOC,
    )


class LinkOut(BaseModel):
    code: str
    short_url: str
    destination: str
    status: LinkStatus
    expires_at: datetime | None
    publisher_id: int
    created_at: datetime
    updated_at: datetime
    rules: list[dict[str, Any]] = Field(description="The link's rules, in order (see create).")


class LinkPage(BaseModel):
    items: list[LinkOut]
    next_after: int | None = Field(description="Pass as `after` for the next page.")


class TrackingUrlOut(BaseModel):
    url: str = Field(description="The short URL with the tracking strings, to share.")
    qr_svg_url: str = Field(description="The URL's QR code as SVG (this API, same key).")
    qr_png_url: str = Field(description="The URL's QR code as PNG (this API, same key).")


def _short_url(link: Link, resources: Resources) -> str:
    return f"{resources.settings.public_base_url}/e/{link.code}"


def _out(link: Link, resources: Resources) -> LinkOut:
    return LinkOut(
        code=link.code,
        short_url=_short_url(link, resources),
        destination=link.destination,
        status=link.status,
        expires_at=link.expires_at,
        publisher_id=link.publisher_id,
        created_at=link.created_at,
        updated_at=link.updated_at,
        rules=link_rules.as_json(link.rules),
    )


def _audited(link: Link) -> dict[str, Any]:
    """The fields of a link an audit entry keeps (what a change can change)."""
    return {
        "destination": link.destination,
        "status": link.status,
        "expires_at": link.expires_at,
        "rules": link_rules.as_json(link.rules),
    }


@router.post("/links", status_code=201)
async def create_link(
    body: LinkIn, principal: PrincipalDep, resources: ResourcesDep, now: NowDep
) -> LinkOut:
    link_model.check_expiry(body.expires_at, now)
    destination = link_model.validate_destination(
        body.destination, resources.settings.allowed_hosts
    )
    rules = link_rules.validate_rules(body.rules, resources.settings.allowed_hosts)
    async with resources.pool.acquire() as conn, conn.transaction():
        owner = await acting_for(conn, principal, body.publisher_id)
        link = await link_store.create_link(
            conn, owner, destination, code=body.code, expires_at=body.expires_at, rules=rules
        )
        await record(
            conn,
            actor_of(principal),
            "link.create",
            "link",
            link.code,
            after=_audited(link),
            publisher_id=link.publisher_id,
        )
    # After the commit: a code may have been looked up (and remembered as unknown) before it
    # existed, and a redirect worker must never see a link the database rolled back.
    await _publish(link, resources)
    return _out(link, resources)


_FIRST_DAY = date(1970, 1, 1)
_LAST_DAY = date(9998, 12, 31)


def _day_start(day: date, resources: Resources) -> datetime:
    """Midnight starting ``day`` in the period time zone: the days every report counts in."""
    return datetime.combine(day, time(0), tzinfo=resources.settings.period_tz)


def _filter(
    resources: Resources,
    status: LinkStatus | None,
    q: str | None,
    host: str | None,
    created_from: date | None,
    created_to: date | None,
) -> link_store.LinkFilter:
    """The list's filter from its query parameters; raises InvalidInput for an impossible
    host or a date range ending before it starts."""
    if host is not None:
        try:
            host = normalise_host(host.strip().strip("[]"))
        except ValueError as exc:
            raise InvalidInput(f"not a host name: {echoed(exc)}", field="host") from None
    if created_from is not None and created_to is not None and created_to < created_from:
        raise InvalidInput("must not be before created_from", field="created_to")
    # Days outside these bounds bound nothing (no link was created before 1970 or after
    # 9998) and are dropped: their midnights would overflow Python's or asyncpg's datetimes.
    if created_from is not None and created_from < _FIRST_DAY:
        created_from = None
    if created_to is not None and created_to >= _LAST_DAY:
        created_to = None
    return link_store.LinkFilter(
        statuses=() if status is None else (status,),
        q=q or None,
        host=host,
        created_from=None if created_from is None else _day_start(created_from, resources),
        created_to=(
            None if created_to is None else _day_start(created_to + timedelta(days=1), resources)
        ),
    )


@router.get("/links")
async def list_links(
    principal: PrincipalDep,
    resources: ResourcesDep,
    after: Annotated[Cursor, Query(description="Cursor: `next_after` of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    publisher_id: Annotated[Id | None, Query(description=PUBLISHER_ID_DOC)] = None,
    status: Annotated[
        LinkStatus | None,
        Query(description="Only this status (default: all but archived)"),
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=MAX_QUERY_LENGTH,
            pattern=PRINTABLE,
            description="Part of the code or of the destination, any case",
        ),
    ] = None,
    host: Annotated[
        str | None,
        Query(max_length=MAX_HOST_LENGTH, description="The destination's host, exactly"),
    ] = None,
    created_from: Annotated[
        date | None, Query(description="Created on or after this day (period time zone)")
    ] = None,
    created_to: Annotated[
        date | None, Query(description="Created on or before this day (period time zone)")
    ] = None,
) -> LinkPage:
    where = _filter(resources, status, q, host, created_from, created_to)
    async with resources.pool.acquire() as conn:
        owners = await publishers_seen(conn, principal, publisher_id)
        page = await link_store.list_links(conn, owners, after=after, limit=limit, where=where)
    return LinkPage(
        items=[_out(link, resources) for link in page],
        next_after=page[-1].id if len(page) == limit else None,
    )


@router.get("/links/{code}")
async def get_link(code: str, principal: PrincipalDep, resources: ResourcesDep) -> LinkOut:
    async with resources.pool.acquire() as conn:
        link = await visible_link(conn, principal, await link_store.get_link(conn, code))
    return _out(link, resources)


@router.patch("/links/{code}")
async def update_link(
    code: str, body: LinkPatch, principal: PrincipalDep, resources: ResourcesDep, now: NowDep
) -> LinkOut:
    sent = body.model_fields_set
    if not sent:
        raise InvalidInput("nothing to change: send destination, status, expires_at and/or rules")
    if "destination" in sent and body.destination is None:
        raise InvalidInput("cannot be null: a link always has a destination", field="destination")
    if "status" in sent and body.status is None:
        raise InvalidInput("cannot be null: send active, disabled or archived", field="status")
    if "rules" in sent and body.rules is None:
        raise InvalidInput("cannot be null: send [] to remove every rule", field="rules")
    destination = None
    if body.destination is not None:
        destination = link_model.validate_destination(
            body.destination, resources.settings.allowed_hosts
        )
    changes: dict[str, Any] = {"status": body.status, "destination": destination}
    if body.rules is not None:
        changes["rules"] = link_rules.validate_rules(body.rules, resources.settings.allowed_hosts)
    if "expires_at" in sent:
        link_model.check_expiry(body.expires_at, now)
        changes["expires_at"] = body.expires_at
    async with resources.pool.acquire() as conn, conn.transaction():
        found = await link_store.get_link(conn, code, for_update=True)
        before = await visible_link(conn, principal, found)
        link = await link_store.update_link(conn, before.id, **changes)
        await record(
            conn,
            actor_of(principal),
            "link.update",
            "link",
            link.code,
            before=_audited(before),
            after=_audited(link),
            publisher_id=link.publisher_id,
        )
    await _publish(link, resources)
    return _out(link, resources)


async def _publish(link: Link, resources: Resources) -> None:
    await mirror.publish_change(
        resources.redis,
        resources.keys,
        link,
        legacy=resources.settings.link_mirror_legacy_writes,
    )


TrackingValue = Annotated[
    str | None, Query(description="Tracking string: at most 128 characters, none invisible")
]
QrSize = Annotated[
    int,
    Query(
        ge=builder.MIN_QR_SCALE,
        le=builder.MAX_QR_SCALE,
        description="Pixels per QR module (the image is (modules + 8) * size pixels square)",
    ),
]


async def link_tracking_url(
    code: str,
    principal: PrincipalDep,
    resources: ResourcesDep,
    af: TrackingValue = None,
    cn: TrackingValue = None,
    cv: TrackingValue = None,
    dp: TrackingValue = None,
) -> str:
    """The tracking URL of a link the key may see (``NotFound`` otherwise), from the query's
    tracking strings; ``InvalidInput`` for one the redirect would drop. The dependency of the
    tracking-URL and both QR routes."""
    async with resources.pool.acquire() as conn:
        link = await visible_link(conn, principal, await link_store.get_link(conn, code))
    return builder.tracking_url(_short_url(link, resources), af=af, cn=cn, cv=cv, dp=dp)


TrackingUrl = Annotated[str, Depends(link_tracking_url)]


@router.get("/links/{code}/tracking-url")
async def get_tracking_url(code: str, request: Request, url: TrackingUrl) -> TrackingUrlOut:
    # The QR routes take the same tracking strings: the query of the URL just built (already
    # checked and encoded), so the QR shows exactly this URL.
    query = urlsplit(url).query
    suffix = f"?{query}" if query else ""
    return TrackingUrlOut(
        url=url,
        qr_svg_url=f"{request.url_for('get_link_qr_svg', code=code)}{suffix}",
        qr_png_url=f"{request.url_for('get_link_qr_png', code=code)}{suffix}",
    )


@router.get(
    "/links/{code}/qr.svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}, "description": "An SVG document"}},
)
async def get_link_qr_svg(url: TrackingUrl, size: QrSize = builder.DEFAULT_QR_SCALE) -> Response:
    return Response(builder.qr_svg(url, scale=size), media_type="image/svg+xml")


@router.get(
    "/links/{code}/qr.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "A PNG image"}},
)
async def get_link_qr_png(url: TrackingUrl, size: QrSize = builder.DEFAULT_QR_SCALE) -> Response:
    return Response(builder.qr_png(url, scale=size), media_type="image/png")
