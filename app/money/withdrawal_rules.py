"""Withdrawals' rules, pure: the status machine, the payment calendar, operators' notes.

    requested ─▶ approved ─▶ paid          (a payment reference is required)
        │            │
        └────────────┴─────▶ rejected      (a reason is required; the balance is restored)

``paid`` and ``rejected`` are final. The calendar (docs/commissions.md §5 gives the seed's
lines):

- a publisher may request a withdrawal on days 1 to ``last_day`` of a month only ("on or
  before the 20th of every month"), days judged in the period time zone;
- with ``preceding_months_only``, a withdrawal takes only what was booked before the current
  calendar month ("the Fees accrued in the preceding calendar months", agreement 7.5):
  credits booked this month become withdrawable on the 1st of the next;
- it is due about ``payment_days`` after the request ("approximately thirty (30) days
  following Participant's instruction", agreement 7.6).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import StrEnum

from app.core.chars import REFUSED_CLASS
from app.errors import Conflict, InvalidInput
from app.money.periods import Month
from app.settings import Settings

DEFAULT_LAST_DAY = 20
DEFAULT_PAYMENT_DAYS = 30
MAX_REFERENCE_LENGTH = 200
MAX_REASON_LENGTH = 500
CLI_ACTOR = "cli"
_REFUSED = re.compile(f"[{REFUSED_CLASS}]")


class WithdrawalRefused(Conflict):
    """The withdrawal breaks a rule (the message says which); nothing was written."""


class WithdrawalStateConflict(Conflict):
    """The withdrawal's status does not allow that step (the message says why)."""


class WithdrawalStatus(StrEnum):
    requested = "requested"
    approved = "approved"
    paid = "paid"
    rejected = "rejected"


class Step(StrEnum):
    """What an operator does to a withdrawal, and the status it leads to."""

    approve = "approve"
    pay = "pay"
    reject = "reject"

    @property
    def target(self) -> WithdrawalStatus:
        return _TARGET[self]


_TARGET = {
    Step.approve: WithdrawalStatus.approved,
    Step.pay: WithdrawalStatus.paid,
    Step.reject: WithdrawalStatus.rejected,
}
_ALLOWED_FROM = {
    Step.approve: frozenset({WithdrawalStatus.requested}),
    Step.pay: frozenset({WithdrawalStatus.approved}),
    Step.reject: frozenset({WithdrawalStatus.requested, WithdrawalStatus.approved}),
}


def check_step(withdrawal_id: int, current: WithdrawalStatus, step: Step) -> None:
    """Refuse a step its status does not allow, saying what the withdrawal needs instead."""
    if current in _ALLOWED_FROM[step]:
        return
    if current is step.target:
        raise WithdrawalStateConflict(f"withdrawal {withdrawal_id} is already {current}")
    allowed = " or ".join(sorted(_ALLOWED_FROM[step]))
    why = {
        WithdrawalStatus.requested: "approve it first",
        WithdrawalStatus.approved: "it is waiting to be paid",
        WithdrawalStatus.paid: "it has been paid, which is final",
        WithdrawalStatus.rejected: "it has been rejected, which is final",
    }[current]
    raise WithdrawalStateConflict(
        f"withdrawal {withdrawal_id} is {current}: only a withdrawal that is {allowed} can be "
        f"{step.target} ({why})"
    )


def api_actor(key_id: int) -> str:
    """How a step made with an API key is recorded."""
    return f"key:{key_id}"


def operator_note(text: str, *, field: str, max_length: int) -> str:
    """A payment reference or a rejection reason: trimmed, not empty, printable, bounded."""
    cleaned = text.strip()
    if not cleaned:
        raise InvalidInput("must not be empty", field=field)
    if len(cleaned) > max_length:
        raise InvalidInput(f"must be at most {max_length} characters", field=field)
    if _REFUSED.search(cleaned):
        raise InvalidInput("must not contain control or invisible characters", field=field)
    return cleaned


def _day_text(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


@dataclass(frozen=True)
class WithdrawalCalendar:
    tz: tzinfo = UTC
    last_day: int = DEFAULT_LAST_DAY
    preceding_months_only: bool = True
    payment_days: int = DEFAULT_PAYMENT_DAYS

    @classmethod
    def from_settings(cls, settings: Settings) -> WithdrawalCalendar:
        return cls(
            tz=settings.period_tz,
            last_day=settings.withdrawal_last_day,
            preceding_months_only=settings.withdrawal_preceding_months_only,
            payment_days=settings.withdrawal_payment_days,
        )

    def today(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()

    def is_open(self, now: datetime) -> bool:
        return self.today(now).day <= self.last_day

    def next_open_day(self, now: datetime) -> date:
        """Today when requests are open, else the 1st of the next month."""
        today = self.today(now)
        if today.day <= self.last_day:
            return today
        following = Month(today.year, today.month).next()
        return date(following.year, following.month, 1)

    def check_open(self, now: datetime) -> None:
        """Refuse a request made after the last day of the month."""
        if self.is_open(now):
            return
        raise WithdrawalRefused(
            f"withdrawals can be requested on days 1 to {self.last_day} of a month "
            f"({self.tz}); today is {_day_text(self.today(now))}, the next day one can be "
            f"requested is {_day_text(self.next_open_day(now))}"
        )

    def booked_before(self, now: datetime) -> datetime | None:
        """Only ledger entries booked before this instant may be withdrawn: the start of the
        current calendar month; None when the whole balance may be."""
        if not self.preceding_months_only:
            return None
        return Month.containing(now, self.tz).starts_at(self.tz)

    def withheld_note(self, now: datetime) -> str:
        """Why part of a balance cannot be withdrawn yet, in plain words."""
        month = Month.containing(now, self.tz)
        first, following = date(month.year, month.month, 1), month.next()
        return (
            f"money booked since {_day_text(first)} becomes withdrawable on "
            f"{_day_text(date(following.year, following.month, 1))}"
        )

    def payment_due(self, requested_at: datetime) -> date:
        return self.today(requested_at) + timedelta(days=self.payment_days)
