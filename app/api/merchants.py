"""Merchants (admin keys only; a publisher key gets 403): list them, create one, disable or
enable it, rotate its postback secret (with an overlap during which the old one is still
accepted), replace the hosts it owns. Every change is in the audit log.

A secret is answered once, by the call that makes it (create, rotate), and never again: the
list says only whether an old secret is still accepted and until when.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from app.accounts import merchants
from app.accounts.apikeys import Principal
from app.accounts.merchants import MAX_HOSTS, MAX_SECRET_OVERLAP_S, Merchant
from app.api import received
from app.api.bodies import JsonRoute
from app.api.deps import AdminDep, ResourcesDep, actor_of
from app.api.params import Id
from app.audit.fields import MERCHANT, record_change
from app.core.db import Conn
from app.errors import NotFound

router = APIRouter(route_class=JsonRoute, tags=["merchants"])

MerchantId = Annotated[Id, Path(description="The merchant's id")]
HostPattern = Annotated[
    str, Field(min_length=1, max_length=300, description="shop.example.com or *.example.com")
]


class MerchantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    name: str = Field(min_length=1, max_length=200, description="Unique; no control characters")
    hosts: list[HostPattern] = Field(
        default_factory=list,
        max_length=MAX_HOSTS,
        description="The hosts its links point at; none: its postbacks attribute to any link",
    )


class HostsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hosts: list[HostPattern] = Field(
        max_length=MAX_HOSTS, description="Replaces the merchant's hosts; []: any host"
    )


class RotateSecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_seconds: StrictInt = Field(
        default=0,
        ge=0,
        le=MAX_SECRET_OVERLAP_S,
        description="0: the old secret stops now; else it is still accepted this many seconds "
        f"(at most {MAX_SECRET_OVERLAP_S}, 7 days)",
    )


class MerchantOut(BaseModel):
    id: int
    name: str
    hosts: list[str] = Field(description="Empty: its postbacks attribute to any link")
    created_at: datetime
    disabled_at: datetime | None = Field(description="Set: its postbacks are refused (403)")
    old_secret_accepted: bool = Field(
        description="A rotation's overlap is running: the previous secret still signs postbacks"
    )
    old_secret_accepted_until: datetime | None = Field(description="When the overlap ends (UTC)")


class MerchantSecretOut(MerchantOut):
    secret: str = Field(description="The postback secret: shown this once, never again")


class MerchantPage(BaseModel):
    items: list[MerchantOut]


def merchant_out(found: Merchant) -> MerchantOut:
    return MerchantOut(
        id=found.id,
        name=found.name,
        hosts=list(found.hosts),
        created_at=found.created_at,
        disabled_at=found.disabled_at,
        old_secret_accepted=found.previous_secret_until is not None,
        old_secret_accepted_until=found.previous_secret_until,
    )


def _with_secret(found: Merchant, secret: str) -> MerchantSecretOut:
    return MerchantSecretOut(**merchant_out(found).model_dump(), secret=secret)


async def _existing(conn: Conn, merchant_id: int) -> Merchant:
    found = await merchants.get_merchant(conn, merchant_id)
    if found is None:
        raise NotFound(f"merchant {merchant_id} does not exist")
    return found


async def _record(
    conn: Conn,
    admin: Principal,
    verb: str,
    before: Merchant | None,
    after: Merchant,
    **extra: object,
) -> None:
    """The audit entry of ``merchant.<verb>``: the merchant's fields, never its secret."""
    await record_change(
        conn, actor_of(admin), "merchant", verb, before, after, MERCHANT, extra=extra
    )


@router.get("/merchants")
async def list_merchants(_admin: AdminDep, resources: ResourcesDep) -> MerchantPage:
    """Every merchant, by id; never a secret."""
    async with resources.pool.acquire() as conn:
        found = await merchants.list_merchants(conn)
    return MerchantPage(items=[merchant_out(m) for m in found])


@router.post("/merchants", status_code=201)
async def create_merchant(
    body: MerchantIn, admin: AdminDep, resources: ResourcesDep
) -> MerchantSecretOut:
    """A new merchant, with its postback secret (shown once). 422 for a name taken, blank or
    with control characters, or a host that is not one."""
    async with resources.pool.acquire() as conn, conn.transaction():
        created, secret = await merchants.create_merchant(conn, body.name, body.hosts)
        await _record(conn, admin, "create", None, created)
    return _with_secret(created, secret)


async def _set_disabled(
    merchant_id: int, disabled: bool, admin: Principal, resources: ResourcesDep
) -> MerchantOut:
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await _existing(conn, merchant_id)
        after = await merchants.set_disabled(conn, merchant_id, disabled)
        if (before.disabled_at is None) == disabled:  # else it already was: no change, no entry
            await _record(conn, admin, "disable" if disabled else "enable", before, after)
    return merchant_out(after)


@router.post("/merchants/{merchant_id}/disable")
async def disable_merchant(
    merchant_id: MerchantId, admin: AdminDep, resources: ResourcesDep
) -> MerchantOut:
    """Refuse the merchant's postbacks from now on (403); its stored orders stay as they are.
    Disabling a disabled merchant changes nothing."""
    return await _set_disabled(merchant_id, True, admin, resources)


@router.post("/merchants/{merchant_id}/enable")
async def enable_merchant(
    merchant_id: MerchantId, admin: AdminDep, resources: ResourcesDep
) -> MerchantOut:
    """Accept the merchant's postbacks again."""
    return await _set_disabled(merchant_id, False, admin, resources)


@router.post("/merchants/{merchant_id}/rotate-secret")
async def rotate_merchant_secret(
    merchant_id: MerchantId,
    admin: AdminDep,
    resources: ResourcesDep,
    sent: Annotated[RotateSecretIn | None, Body()] = None,
) -> MerchantSecretOut:
    """A new postback secret (shown once). The old one stops now, or with ``overlap_seconds``
    is still accepted that long, so the merchant can switch without losing postbacks."""
    body = sent or RotateSecretIn()
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await _existing(conn, merchant_id)
        after, secret = await merchants.rotate_secret(
            conn, merchant_id, overlap_s=body.overlap_seconds
        )
        await _record(
            conn, admin, "rotate_secret", before, after, overlap_seconds=body.overlap_seconds
        )
    return _with_secret(after, secret)


@router.put("/merchants/{merchant_id}/hosts")
async def set_merchant_hosts(
    merchant_id: MerchantId, body: HostsIn, admin: AdminDep, resources: ResourcesDep
) -> MerchantOut:
    """Replace the hosts the merchant owns: its next postbacks attribute orders only to
    clicks on links to them (``[]``: any link). Orders already decided stay as they are."""
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await _existing(conn, merchant_id)
        after = await merchants.set_hosts(conn, merchant_id, body.hosts)
        if after.hosts != before.hosts:
            await _record(conn, admin, "set_hosts", before, after)
    return merchant_out(after)


# The log of each merchant's received postbacks, and its replays.
router.include_router(received.router)
