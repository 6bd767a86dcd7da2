"""Caps on a publisher's clicks, orders and commission (docs/commissions.md, "Caps"):
create, list, read with what each has used in its current window, change the limit or the
fallback, disable and enable.

Caps are the operator's control of spend: an admin key sets any publisher's (naming
``publisher_id``), a network's key its members'; a publisher key reads its own (a network's
key its members' too) and gets 403 on a change. Another account's cap answers 404, like a
missing one. Every change is in the audit log. Commission is answered in US dollars as a
string (``"125.50"``), times in the period time zone. Included by ``app/api/publishers.py``.
"""

from __future__ import annotations

import logging
from datetime import datetime, time
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from app.accounts.apikeys import Principal, Role
from app.api.bodies import JsonRoute
from app.api.deps import NowDep, PrincipalDep, ResourcesDep, actor_of
from app.api.params import PRINTABLE, BodyId, Id
from app.api.scope import acting_for, may_see, publishers_seen
from app.api.zones import in_zone
from app.audit.log import record
from app.caps import clicks
from app.caps import model as caps_model
from app.caps import store as caps_store
from app.caps.model import Cap, CapMetric, CapRequest, CapScope
from app.caps.windows import CapPeriod
from app.core.db import Conn
from app.core.redis import REDIS_UNAVAILABLE
from app.core.resources import Resources
from app.errors import Forbidden, InvalidInput, NotFound
from app.links.mirror import MIRROR_TTL_S

router = APIRouter(route_class=JsonRoute, tags=["caps"])
log = logging.getLogger(__name__)

CapId = Annotated[Id, Path(description="The cap's id")]
OPERATORS_ONLY = (
    "caps are the operator's control of spend: a publisher key may read its own caps, not "
    "change them (an admin key, or its network's key, can)"
)
CAP_DOC = (
    "Clicks or orders: a whole number; commission: US dollars with at most 2 decimals "
    '(a string such as "125.50", or a number). 0 lets nothing through.'
)
Fallback = Annotated[str | None, Field(max_length=4096)]


class CapIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    metric: CapMetric
    period: CapPeriod = Field(description="day, month, or calculation_period (10th to 9th)")
    cap: Decimal = Field(description=CAP_DOC)
    link: str | None = Field(
        default=None, max_length=64, description="A link's code: the cap counts that link only"
    )
    campaign: str | None = Field(
        default=None, max_length=4096, description="A cn value: the cap counts that campaign only"
    )
    fallback_url: Fallback = Field(
        default=None, description="Click caps only: where clicks over the cap go"
    )
    publisher_id: BodyId | None = Field(
        default=None, description="Admin keys: required; a network's key: one of its members"
    )


class CapPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cap: Decimal | None = Field(default=None, description=CAP_DOC)
    fallback_url: Fallback = Field(default=None, description="Click caps only; null clears it")
    enabled: StrictBool | None = None


class UsageOut(BaseModel):
    window_starts_at: datetime = Field(description="The current window's start")
    window_ends_at: datetime = Field(description="Its end: the next window's start")
    used: str | None = Field(
        description="Counted in the current window (commission: dollars); a click cap's: "
        "null when Redis does not answer"
    )
    remaining: str | None


class CapOut(BaseModel):
    id: int
    publisher_id: int
    metric: CapMetric
    period: CapPeriod
    cap: str = Field(description="Clicks or orders, or commission in US dollars")
    scope: CapScope
    link: str | None = Field(description="The link's code (scope link)")
    campaign: str | None = Field(description="The cn value (scope campaign)")
    fallback_url: str | None
    enabled: bool
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime
    usage: UsageOut


class CapPage(BaseModel):
    items: list[CapOut]


def _usage(found: Cap, used: int | None, now: datetime, resources: Resources) -> UsageOut:
    tz = resources.settings.period_tz
    window = caps_store.current_window(found, now, tz)
    left = None if used is None else max(found.cap - used, 0)
    return UsageOut(
        window_starts_at=datetime.combine(window.start, time(), tz),
        window_ends_at=datetime.combine(window.end, time(), tz),
        used=None if used is None else caps_model.cap_shown(found.metric, used),
        remaining=None if left is None else caps_model.cap_shown(found.metric, left),
    )


async def _answer(
    conn: Conn, found: list[Cap], now: datetime, resources: Resources
) -> list[CapOut]:
    """``found`` as answered, each with its usage now (a click cap's null when Redis does
    not answer)."""
    tz = resources.settings.period_tz
    used = await caps_store.caps_used(conn, resources.redis, resources.keys, found, now, tz)
    return [
        CapOut(
            id=c.id,
            publisher_id=c.publisher_id,
            metric=c.metric,
            period=c.period,
            cap=caps_model.cap_shown(c.metric, c.cap),
            scope=c.scope,
            link=c.link_code,
            campaign=c.campaign,
            fallback_url=c.fallback_url,
            enabled=c.enabled,
            disabled_at=in_zone(c.disabled_at, tz),
            created_at=in_zone(c.created_at, tz),
            updated_at=in_zone(c.updated_at, tz),
            usage=_usage(c, used.get(c.id), now, resources),
        )
        for c in found
    ]


def check_may_change(principal: Principal, publisher_id: int) -> None:
    """Raise ``Forbidden`` unless ``principal`` may change ``publisher_id``'s caps (which
    ``acting_for``/``may_see`` already let it see): an admin key, or a network's key for a
    member; never a publisher's key for its own."""
    if principal.role is not Role.admin and principal.publisher_id == publisher_id:
        raise Forbidden(OPERATORS_ONLY)


async def visible_cap(conn: Conn, principal: Principal, cap_id: int, *, lock: bool = False) -> Cap:
    """The cap when the key may see it; another account's answers like a missing one."""
    found = await caps_store.get_cap(conn, cap_id, for_update=lock)
    if found is None or not await may_see(conn, principal, found.publisher_id):
        raise NotFound(f"no cap {cap_id}")
    return found


async def publish(conn: Conn, resources: Resources, found: Cap) -> None:
    """After the commit, tell the redirect of a click cap's change (``clicks.publish_caps``).
    Redis failing does not undo the change: it is logged, and the redirect applies the
    change once its copies expire (the mirror's TTL and the link cache's)."""
    if found.metric is not CapMetric.clicks:
        return
    try:
        legacy = resources.settings.link_mirror_legacy_writes
        mirror = clicks.LinkMirror(resources.redis, resources.keys, legacy)
        await clicks.publish_caps(conn, mirror, found.publisher_id)
    except REDIS_UNAVAILABLE as exc:
        log.warning(
            "click cap change not published; the redirect applies it within %ss",
            MIRROR_TTL_S,
            extra={"cap_id": found.id, "error": str(exc)},
        )


async def _changed(
    conn: Conn, principal: Principal, verb: str, before: Cap | None, after: Cap
) -> None:
    await record(
        conn,
        actor_of(principal),
        f"cap.{verb}",
        "cap",
        after.id,
        before=None if before is None else caps_model.audit_state(before),
        after=caps_model.audit_state(after),
        publisher_id=after.publisher_id,
    )


@router.post("/caps", status_code=201)
async def create_cap(
    body: CapIn, principal: PrincipalDep, resources: ResourcesDep, now: NowDep
) -> CapOut:
    """A new cap, enabled at once. 422 in words for a bad field: a limit below 0, a
    fraction of an order, a sub-cent commission, a fallback on an order or commission cap
    or on a host not allowed, a link the publisher does not have, both a link and a
    campaign, a campaign the redirect would drop."""
    request = CapRequest(
        body.metric, body.period, body.cap, body.link, body.campaign, body.fallback_url
    )
    async with resources.pool.acquire() as conn:
        async with conn.transaction():
            owner = await acting_for(conn, principal, body.publisher_id)
            check_may_change(principal, owner)
            caps_model.check_scope(body.link, body.campaign)
            link_id = (
                None if body.link is None else await caps_store.link_of(conn, owner, body.link)
            )
            spec = caps_model.new_cap(request, owner, link_id, resources.settings.allowed_hosts)
            created = await caps_store.create_cap(conn, spec)
            await _changed(conn, principal, "create", None, created)
        await publish(conn, resources, created)  # after the commit, as link changes are
        [answer] = await _answer(conn, [created], now, resources)
    return answer


@router.get("/caps")
async def list_caps(
    principal: PrincipalDep,
    resources: ResourcesDep,
    now: NowDep,
    publisher_id: Annotated[Id | None, Query(description="Admin keys: required")] = None,
    metric: CapMetric | None = None,
    period: CapPeriod | None = None,
    link: Annotated[str | None, Query(max_length=64, description="A link's code")] = None,
    campaign: Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)] = None,
    enabled: Annotated[bool | None, Query(description="Only enabled, or only disabled")] = None,
) -> CapPage:
    """The caps of the publisher (a publisher key: its own, and a network's its members'),
    by id, each with its usage in its current window."""
    async with resources.pool.acquire() as conn:
        owners = await publishers_seen(conn, principal, publisher_id)
        link_id = None
        if link is not None:
            if len(owners) != 1:
                raise InvalidInput("name the link's publisher with publisher_id", field="link")
            link_id = await caps_store.link_of(conn, owners[0], link)
        where = caps_store.CapFilter(metric, period, link_id, campaign, enabled)
        found = await caps_store.list_caps(conn, owners, where)
        return CapPage(items=await _answer(conn, found, now, resources))


@router.get("/caps/{cap_id}")
async def get_cap(
    cap_id: CapId, principal: PrincipalDep, resources: ResourcesDep, now: NowDep
) -> CapOut:
    async with resources.pool.acquire() as conn:
        found = await visible_cap(conn, principal, cap_id)
        [answer] = await _answer(conn, [found], now, resources)
    return answer


async def change_cap(
    cap_id: int, principal: Principal, resources: Resources, now: datetime, patch: CapPatch
) -> CapOut:
    """Apply ``patch`` (the fields sent) to a cap the key may change; audited when
    something changed; click caps published to the redirect after the commit."""
    sent = patch.model_fields_set
    async with resources.pool.acquire() as conn:
        async with conn.transaction():
            before = await visible_cap(conn, principal, cap_id, lock=True)
            check_may_change(principal, before.publisher_id)
            changes: dict[str, Any] = {"enabled": patch.enabled}
            if patch.cap is not None:
                changes["cap"] = caps_model.cap_units(before.metric, patch.cap)
            if "fallback_url" in sent:
                changes["fallback_url"] = caps_model.check_fallback(
                    before.metric, patch.fallback_url, resources.settings.allowed_hosts
                )
            after = await caps_store.update_cap(conn, before, **changes)
            if after != before:
                verb = (
                    "update"
                    if patch.enabled is None or after.enabled == before.enabled
                    else ("enable" if after.enabled else "disable")
                )
                await _changed(conn, principal, verb, before, after)
        if after != before:
            await publish(conn, resources, after)
        [answer] = await _answer(conn, [after], now, resources)
    return answer


@router.patch("/caps/{cap_id}")
async def update_cap(
    cap_id: CapId, body: CapPatch, principal: PrincipalDep, resources: ResourcesDep, now: NowDep
) -> CapOut:
    """Change the limit, the fallback (click caps; null clears it) or ``enabled``. What a
    cap counts (metric, window, scope) is fixed: create another one for that."""
    sent = body.model_fields_set
    if not sent:
        raise InvalidInput("nothing to change: send cap, fallback_url and/or enabled")
    if "cap" in sent and body.cap is None:
        raise InvalidInput("cannot be null: a cap always has a limit", field="cap")
    if "enabled" in sent and body.enabled is None:
        raise InvalidInput("cannot be null: send true or false", field="enabled")
    return await change_cap(cap_id, principal, resources, now, body)


@router.post("/caps/{cap_id}/disable")
async def disable_cap(
    cap_id: CapId, principal: PrincipalDep, resources: ResourcesDep, now: NowDep
) -> CapOut:
    """The cap stops counting and declining (its counts are kept); again: no change."""
    return await change_cap(cap_id, principal, resources, now, CapPatch(enabled=False))


@router.post("/caps/{cap_id}/enable")
async def enable_cap(
    cap_id: CapId, principal: PrincipalDep, resources: ResourcesDep, now: NowDep
) -> CapOut:
    """The cap counts again, from what its current window had counted."""
    return await change_cap(cap_id, principal, resources, now, CapPatch(enabled=True))
