"""Payout overrides: a publisher's (or a network's, for its members) own rates, versioned by
the calculation period they take effect from (``app/money/overrides_store.py``).

An admin key writes them. Reading: an admin any publisher's; a publisher key its own; a
network's key its own and its members'. A network is a publisher of kind network, so the
same routes cover networks: a network's versions apply to its members (the member's own
win at equal specificity, docs/commissions.md "Payout overrides").
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response
from pydantic import BaseModel, Field

from app.api.bodies import JsonRoute
from app.api.deps import AdminDep, PrincipalDep, ResourcesDep, actor_of
from app.api.params import Id
from app.api.scope import acting_for
from app.audit.log import record
from app.core.db import Conn
from app.errors import NotFound
from app.money import overrides_store
from app.money.overrides import OverrideVersion, override_from_data
from app.money.periods import Period
from app.money.plans_store import PutOutcome

router = APIRouter(route_class=JsonRoute, tags=["payout overrides"])

PublisherPath = Annotated[Id, Path(description="The publisher's (or network's) id")]
PeriodPath = Annotated[
    str, Path(description="YYYY-MM: the calculation period (10th to 9th) it takes effect from")
]
_BASE = "/publishers/{publisher_id}/payout-overrides"


class OverrideOut(BaseModel):
    publisher_id: int = Field(description="Whose override: the publisher or its network")
    effective_period: str = Field(description="YYYY-MM: in force from this period on")
    effective_from: date = Field(description="The period's first day (a 10th)")
    rates: dict[str, Decimal] = Field(description="Category -> percent (8.5 = 8.5 %)")
    new_buyer_rates: dict[str, Decimal] = Field(description="Category -> percent, new buyers")


class OverridePutOut(BaseModel):
    outcome: PutOutcome
    override: OverrideOut


class InForceOut(BaseModel):
    period: str = Field(description="YYYY-MM")
    own: OverrideOut | None = Field(description="The publisher's own version in force")
    network: OverrideOut | None = Field(description="Its network's version in force")


def _out(version: OverrideVersion) -> OverrideOut:
    return OverrideOut(
        publisher_id=version.publisher_id,
        effective_period=str(version.effective_from),
        effective_from=version.effective_from.start_date,
        rates=dict(sorted(version.override.rates.items())),
        new_buyer_rates=dict(sorted(version.override.new_buyer_rates.items())),
    )


def _audited(version: OverrideVersion | None) -> dict[str, Any] | None:
    return None if version is None else version.override.as_json()


async def _existing(conn: Conn, publisher_id: int) -> None:
    if await conn.fetchval("SELECT 1 FROM publishers WHERE id = $1", publisher_id) is None:
        raise NotFound(f"publisher {publisher_id} does not exist")


@router.get(_BASE)
async def list_overrides(
    publisher_id: PublisherPath, principal: PrincipalDep, resources: ResourcesDep
) -> list[OverrideOut]:
    """The publisher's own versions, oldest first; each is in force from its period until
    the next one's."""
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        return [_out(v) for v in await overrides_store.list_versions(conn, owner)]


@router.get(_BASE + "/{period}")
async def override_in_force(
    publisher_id: PublisherPath,
    period: PeriodPath,
    principal: PrincipalDep,
    resources: ResourcesDep,
) -> InForceOut:
    """The versions in force in ``period`` for orders placed in it: the publisher's own and
    its network's (either may be null)."""
    wanted = Period.parse(period, field="period")
    async with resources.pool.acquire() as conn:
        owner = await acting_for(conn, principal, publisher_id)
        book = await overrides_store.load_override_book(conn, owner)
    own, network = book.own_in_force(wanted), book.network_in_force(wanted)
    return InForceOut(
        period=str(wanted),
        own=None if own is None else _out(own),
        network=None if network is None else _out(network),
    )


@router.put(_BASE + "/{period}")
async def put_override(
    publisher_id: PublisherPath,
    period: PeriodPath,
    response: Response,
    admin: AdminDep,
    resources: ResourcesDep,
    body: Annotated[
        dict[str, Any],
        Body(
            description='{"rates": {"category": "9.5", ...}, "new_buyer_rates": {...}}: '
            "percentages, at most four decimals, never below the program's 8 %"
        ),
    ],
) -> OverridePutOut:
    """Create or replace the version effective from ``period``. A period already closed
    for the publisher (a network: for any member) cannot change (409)."""
    wanted = Period.parse(period, field="period")
    override = override_from_data(body)  # OverrideError: 422
    async with resources.pool.acquire() as conn, conn.transaction():
        await _existing(conn, publisher_id)
        before = await overrides_store.get_version(conn, publisher_id, wanted)
        outcome = await overrides_store.put_version(conn, publisher_id, wanted, override)
        if outcome is not PutOutcome.unchanged:
            await record(
                conn,
                actor_of(admin),
                "payout_override.put",
                "payout_override",
                f"{publisher_id}/{wanted}",
                before=_audited(before),
                after=override.as_json(),
                publisher_id=publisher_id,
            )
    if outcome is PutOutcome.created:
        response.status_code = 201
    return OverridePutOut(
        outcome=outcome, override=_out(OverrideVersion(publisher_id, wanted, override))
    )


@router.delete(_BASE + "/{period}", status_code=204)
async def delete_override(
    publisher_id: PublisherPath, period: PeriodPath, admin: AdminDep, resources: ResourcesDep
) -> None:
    """Delete the version effective from ``period``; one whose period is closed cannot
    be deleted (409)."""
    wanted = Period.parse(period, field="period")
    async with resources.pool.acquire() as conn, conn.transaction():
        await _existing(conn, publisher_id)
        before = await overrides_store.get_version(conn, publisher_id, wanted)
        if before is None:
            raise NotFound(f"publisher {publisher_id} has no override effective from {wanted}")
        await overrides_store.delete_version(conn, publisher_id, wanted)  # 409
        await record(
            conn,
            actor_of(admin),
            "payout_override.delete",
            "payout_override",
            f"{publisher_id}/{wanted}",
            before=_audited(before),
            publisher_id=publisher_id,
        )
