"""The account balance as a publisher reads it: the balance (the sum of the ledger), the part
of it that can be withdrawn now, and, when no withdrawal can be requested, why and from
when. ``GET /money/balance`` and the dashboard's balance card both read it here. Days are
those of the period time zone (docs/commissions.md §5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from app.core.db import Conn
from app.money import withdrawals
from app.money.periods import Month
from app.money.plans_store import withdrawal_rules
from app.money.withdrawal_rules import WithdrawalCalendar
from app.settings import Settings


def day_text(day: date) -> str:
    """``1 June 2019``."""
    return f"{day.day} {day:%B %Y}"


@dataclass(frozen=True)
class BalanceStatus:
    balance: Decimal  # the sum of the ledger
    withdrawable: Decimal  # what a withdrawal may take now, fee included
    minimum_balance: Decimal  # the withdrawable balance must be above it
    fee: Decimal
    calendar: WithdrawalCalendar
    request_day: bool  # today (in the period time zone) requests are taken
    next_request_day: date  # today when requests are taken, else the 1st of next month
    withheld_until: date | None  # when what is booked this month becomes withdrawable

    @property
    def can_withdraw(self) -> bool:
        """A request day, and the withdrawable balance above the minimum."""
        return self.request_day and self.withdrawable > self.minimum_balance

    @property
    def withheld(self) -> Decimal:
        """The part of the balance booked this calendar month: not withdrawable yet."""
        return max(self.balance - self.withdrawable, Decimal("0.00"))

    def reasons(self) -> list[str]:
        """Why no withdrawal can be requested now, and from when; empty when one can."""
        found = []
        if not self.request_day:
            found.append(
                f"withdrawals can be requested on days 1 to {self.calendar.last_day} of a "
                f"month; the next request day is {day_text(self.next_request_day)}"
            )
        if self.withdrawable <= self.minimum_balance:
            found.append(
                f"a withdrawal needs more than US${self.minimum_balance:,.2f} withdrawable "
                f"(US${self.withdrawable:,.2f} now)"
            )
        if found and self.withheld > 0 and self.withheld_until is not None:
            found.append(
                f"US${self.withheld:,.2f} booked this month becomes withdrawable on "
                f"{day_text(self.withheld_until)}"
            )
        return found


async def balance_status(
    conn: Conn, publisher_id: int, settings: Settings, now: datetime
) -> BalanceStatus:
    """The publisher's balance and what of it can be withdrawn at ``now``, by the withdrawal
    calendar of ``settings`` and the rules of the plan in force."""
    calendar = WithdrawalCalendar.from_settings(settings)
    booked_before = calendar.booked_before(now)
    current, available = await withdrawals.withdrawable(conn, publisher_id, booked_before)
    rules = await withdrawal_rules(conn, now, calendar.tz)
    return BalanceStatus(
        balance=current,
        withdrawable=available,
        minimum_balance=rules.minimum_balance,
        fee=rules.fee,
        calendar=calendar,
        request_day=calendar.is_open(now),
        next_request_day=calendar.next_open_day(now),
        withheld_until=None if booked_before is None else _first_of_next_month(calendar, now),
    )


def _first_of_next_month(calendar: WithdrawalCalendar, now: datetime) -> date:
    following = Month.containing(now, calendar.tz).next()
    return date(following.year, following.month, 1)
