"""Commission plans: any key reads them (publishers see their rates); an admin writes them."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel

from app.api import overrides
from app.api.bodies import JsonRoute
from app.api.deps import AdminDep, PrincipalDep, ResourcesDep, actor_of
from app.audit.log import record
from app.errors import InvalidInput, NotFound
from app.money import plans_store
from app.money.plan import Plan, plan_from_data
from app.money.plans_store import PutOutcome

router = APIRouter(route_class=JsonRoute, tags=["plans"])
# Payout overrides, a publisher's own rates next to the plan's, come with this router.
router.include_router(overrides.router)


class PlanPutOut(BaseModel):
    outcome: PutOutcome
    plan: Plan


@router.get("/plans")
async def list_plans(_principal: PrincipalDep, resources: ResourcesDep) -> list[Plan]:
    """Every plan, oldest first; each is in force from its date until the next one's."""
    async with resources.pool.acquire() as conn:
        return await plans_store.list_plans(conn)


@router.get("/plans/{effective_from}")
async def get_plan(effective_from: date, _principal: PrincipalDep, resources: ResourcesDep) -> Plan:
    async with resources.pool.acquire() as conn:
        found = await plans_store.get_plan(conn, effective_from)
    if found is None:
        raise NotFound(f"no plan takes effect on {effective_from}")
    return found


@router.put("/plans/{effective_from}")
async def put_plan(
    effective_from: date,
    response: Response,
    admin: AdminDep,
    resources: ResourcesDep,
    body: Annotated[
        dict[str, Any],
        Body(description="A plan (see GET /plans); effective_from may be omitted from it."),
    ],
) -> PlanPutOut:
    """Create or replace the plan that takes effect on ``effective_from`` (a 10th). A plan
    under which commissions were credited cannot change (409)."""
    if body.setdefault("effective_from", str(effective_from)) != str(effective_from):
        raise InvalidInput("differs from the one in the path", field="effective_from")
    plan = plan_from_data(body)  # PlanError: 422
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await plans_store.get_plan(conn, effective_from)
        outcome = await plans_store.put_plan(conn, plan)  # PlanInUse: 409
        if outcome is not PutOutcome.unchanged:
            await record(
                conn,
                actor_of(admin),
                "plan.put",
                "plan",
                effective_from,
                before=None if before is None else before.model_dump(mode="json"),
                after=plan.model_dump(mode="json"),
            )
    if outcome is PutOutcome.created:
        response.status_code = 201
    return PlanPutOut(outcome=outcome, plan=plan)


@router.delete("/plans/{effective_from}", status_code=204)
async def delete_plan(effective_from: date, admin: AdminDep, resources: ResourcesDep) -> None:
    """Delete a plan no commission was credited under."""
    async with resources.pool.acquire() as conn, conn.transaction():
        before = await plans_store.get_plan(conn, effective_from)
        deleted = await plans_store.delete_plan(conn, effective_from)  # PlanInUse: 409
        if not deleted or before is None:
            raise NotFound(f"no plan takes effect on {effective_from}")
        await record(
            conn,
            actor_of(admin),
            "plan.delete",
            "plan",
            effective_from,
            before=before.model_dump(mode="json"),
        )
