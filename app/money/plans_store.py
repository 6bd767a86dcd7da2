"""Commission plans in Postgres, versioned by the date they take effect.

A plan is in force from its ``effective_from`` (the start of a period) until the next plan's.
Once an order has been credited under a plan, that plan is frozen: replacing or deleting it
would make the ledger disagree with the plan it cites.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from enum import StrEnum

from app.core.db import Conn
from app.errors import Conflict
from app.money.periods import Period
from app.money.plan import Plan, WithdrawalRules, plan_from_data


class PlanInUse(Conflict):
    """The plan has paid commissions; it can no longer change."""


class PutOutcome(StrEnum):
    created = "created"
    replaced = "replaced"
    unchanged = "unchanged"


def _body(plan: Plan) -> str:
    return json.dumps(plan.model_dump(mode="json"))


def _plan(body: str) -> Plan:
    return plan_from_data(json.loads(body))


async def plan_in_use(conn: Conn, effective_from: date) -> bool:
    used: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM ledger WHERE plan_from = $1)", effective_from
    )
    return used


async def put_plan(conn: Conn, plan: Plan) -> PutOutcome:
    async with conn.transaction():
        existing = await conn.fetchval(
            "SELECT body FROM commission_plans WHERE effective_from = $1 FOR UPDATE",
            plan.effective_from,
        )
        if existing is not None:
            if _plan(existing) == plan:
                return PutOutcome.unchanged
            if await plan_in_use(conn, plan.effective_from):
                raise PlanInUse(
                    f"the plan effective {plan.effective_from} has paid commissions; "
                    "add a plan effective from a later period instead"
                )
        await conn.execute(
            """INSERT INTO commission_plans (effective_from, name, body) VALUES ($1, $2, $3)
               ON CONFLICT (effective_from) DO UPDATE
               SET name = EXCLUDED.name, body = EXCLUDED.body, updated_at = now()""",
            plan.effective_from,
            plan.name,
            _body(plan),
        )
    return PutOutcome.created if existing is None else PutOutcome.replaced


async def get_plan(conn: Conn, effective_from: date) -> Plan | None:
    body = await conn.fetchval(
        "SELECT body FROM commission_plans WHERE effective_from = $1", effective_from
    )
    return None if body is None else _plan(body)


async def list_plans(conn: Conn) -> list[Plan]:
    rows = await conn.fetch("SELECT body FROM commission_plans ORDER BY effective_from")
    return [_plan(r["body"]) for r in rows]


async def delete_plan(conn: Conn, effective_from: date) -> bool:
    """Delete an unused plan; False when there was none."""
    async with conn.transaction():
        found = await conn.fetchval(
            "SELECT 1 FROM commission_plans WHERE effective_from = $1 FOR UPDATE", effective_from
        )
        if found is None:
            return False
        if await plan_in_use(conn, effective_from):
            raise PlanInUse(f"the plan effective {effective_from} has paid commissions")
        await conn.execute("DELETE FROM commission_plans WHERE effective_from = $1", effective_from)
    return True


@dataclass(frozen=True)
class PlanBook:
    """Every plan, to find the one in force in a period."""

    plans: tuple[Plan, ...]  # by ascending effective_from

    def for_period(self, period: Period) -> Plan | None:
        starts = [p.effective_from for p in self.plans]
        index = bisect.bisect_right(starts, period.start_date)
        return self.plans[index - 1] if index else None


async def withdrawal_rules(conn: Conn, at: datetime, tz: tzinfo) -> WithdrawalRules:
    """The withdrawal rules of the plan in force at ``at`` (the defaults before any plan)."""
    plan = (await load_book(conn)).for_period(Period.containing(at, tz))
    return WithdrawalRules() if plan is None else plan.withdrawal_rules


async def load_book(conn: Conn, *, lock: bool = False) -> PlanBook:
    """All plans. ``lock`` holds them (FOR SHARE) until the transaction ends, so a plan
    cannot be replaced while commissions are being credited under it."""
    suffix = " FOR SHARE" if lock else ""
    rows = await conn.fetch(f"SELECT body FROM commission_plans ORDER BY effective_from{suffix}")
    return PlanBook(tuple(_plan(r["body"]) for r in rows))
