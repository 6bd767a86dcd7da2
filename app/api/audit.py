"""The audit log, read: who changed what and when, newest first.

An admin key reads every entry (``publisher_id`` narrows to one publisher's); a publisher key
only the entries of its own publisher (the changes made to its account, its keys, its
withdrawals, its orders and periods, by whoever made them), and a network's key its members'
too (``app.api.scope``: one named with ``publisher_id``, else its own and all its members');
naming another publisher answers 404, as elsewhere. Pages go backwards: pass
``next_before_id`` as ``before_id``.
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.accounts.apikeys import Role
from app.api.bodies import JsonRoute
from app.api.deps import PrincipalDep, ResourcesDep
from app.api.params import Id, Instant
from app.api.scope import publishers_seen
from app.audit.log import AuditEntry, list_entries
from app.errors import InvalidInput

router = APIRouter(route_class=JsonRoute, tags=["audit"])

MAX_LIMIT = 500
Text = Annotated[str | None, Query(min_length=1, max_length=200)]


class AuditEntryOut(BaseModel):
    id: int
    at: datetime = Field(description="When the change was committed, UTC")
    actor: str = Field(description="'key:<id>', 'dashboard:key:<id>' or 'cli:<os user>'")
    actor_role: str = Field(description="admin, publisher or operator (the CLI)")
    publisher_id: int | None = Field(description="The publisher the target belongs to")
    action: str = Field(description="'<target kind>.<verb>': api_key.revoke, merchant.disable")
    target_kind: str
    target_id: str
    before: dict[str, Any] | None = Field(description="The target before; null: created")
    after: dict[str, Any] | None = Field(description="The target after; null: deleted")


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_before_id: int | None = Field(description="Pass as `before_id` for the next page.")


def entry_out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=entry.id,
        at=entry.at.astimezone(UTC),
        actor=entry.actor,
        actor_role=entry.actor_role,
        publisher_id=entry.publisher_id,
        action=entry.action,
        target_kind=entry.target_kind,
        target_id=entry.target_id,
        before=entry.before,
        after=entry.after,
    )


@router.get("/audit")
async def list_audit(
    principal: PrincipalDep,
    resources: ResourcesDep,
    target_kind: Text = None,
    target_id: Text = None,
    action: Text = None,
    since: Annotated[Instant | None, Query(description="At or after this instant")] = None,
    until: Annotated[Instant | None, Query(description="Before this instant")] = None,
    publisher_id: Annotated[
        Id | None,
        Query(description="Admin keys: one publisher's entries; a network's key: one member's"),
    ] = None,
    before_id: Annotated[Id | None, Query(description="Cursor: `next_before_id`")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> AuditPage:
    """Entries newest first, each filter applied when given."""
    if since is not None and until is not None and until <= since:
        raise InvalidInput("must be after since", field="until")
    async with resources.pool.acquire() as conn:
        # An admin key: every entry, or one publisher's. A publisher key: its own; a
        # network's key also its members' (one named, or with none, its own and all theirs).
        # Anyone else's answers 404, like a publisher that does not exist.
        owners: list[int | None] = [publisher_id]
        if principal.role is not Role.admin:
            owners = list(await publishers_seen(conn, principal, publisher_id))
        pages = [
            await list_entries(
                conn,
                publisher_id=owner,
                target_kind=target_kind,
                target_id=target_id,
                action=action,
                since=since,
                until=until,
                before_id=before_id,
                limit=limit,
            )
            for owner in owners
        ]
    # Each publisher's newest ``limit`` below the cursor: merged, their newest ``limit`` are
    # the page (newest first), and the cursor pages on from its last one.
    page = heapq.nlargest(limit, (e for found in pages for e in found), key=lambda e: e.id)
    return AuditPage(
        items=[entry_out(e) for e in page],
        next_before_id=page[-1].id if len(page) == limit else None,
    )
