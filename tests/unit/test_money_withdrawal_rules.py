"""Withdrawals' pure rules: which step each status allows, the request days, what is
withdrawable, operators' notes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from app.errors import InvalidInput
from app.money.withdrawal_rules import (
    Step,
    WithdrawalCalendar,
    WithdrawalRefused,
    WithdrawalStateConflict,
    WithdrawalStatus,
    check_step,
    operator_note,
)
from app.settings import Settings

S = WithdrawalStatus
ALLOWED = {
    (S.requested, Step.approve),
    (S.requested, Step.reject),
    (S.approved, Step.pay),
    (S.approved, Step.reject),
}


@pytest.mark.parametrize("status", list(WithdrawalStatus))
@pytest.mark.parametrize("step", list(Step))
def test_each_status_allows_only_its_steps(status: WithdrawalStatus, step: Step) -> None:
    if (status, step) in ALLOWED:
        check_step(7, status, step)
    else:
        with pytest.raises(WithdrawalStateConflict, match=r"^withdrawal 7 is "):
            check_step(7, status, step)


def test_refusals_say_why() -> None:
    with pytest.raises(WithdrawalStateConflict, match=r"^withdrawal 3 is already paid$"):
        check_step(3, S.paid, Step.pay)
    with pytest.raises(WithdrawalStateConflict, match=r"can be paid \(approve it first\)$"):
        check_step(3, S.requested, Step.pay)
    with pytest.raises(WithdrawalStateConflict, match="rejected, which is final"):
        check_step(3, S.rejected, Step.approve)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_defaults_are_the_seeds() -> None:
    calendar = WithdrawalCalendar.from_settings(Settings())
    assert (calendar.last_day, calendar.preceding_months_only, calendar.payment_days) == (
        20,
        True,
        30,
    )


def test_request_days_and_the_next_one() -> None:
    calendar = WithdrawalCalendar()
    assert calendar.is_open(utc("2024-02-20T23:59:59"))
    assert not calendar.is_open(utc("2024-02-21T00:00:00"))
    assert calendar.next_open_day(utc("2024-02-29T12:00:00")) == date(2024, 3, 1)
    assert calendar.next_open_day(utc("2024-12-21T00:00:00")) == date(2025, 1, 1)
    assert calendar.next_open_day(utc("2024-12-01T00:00:00")) == date(2024, 12, 1)
    with pytest.raises(WithdrawalRefused, match="next day one can be requested is 1 January 2025"):
        calendar.check_open(utc("2024-12-31T23:00:00"))
    every_day = WithdrawalCalendar(last_day=31)
    assert every_day.is_open(utc("2024-01-31T12:00:00"))


def test_days_are_judged_in_the_period_time_zone() -> None:
    tokyo = WithdrawalCalendar(tz=ZoneInfo("Asia/Tokyo"))
    assert not tokyo.is_open(utc("2024-05-20T15:00:00"))  # 00:00 on the 21st in Tokyo
    assert tokyo.is_open(utc("2024-05-20T14:59:59"))
    assert tokyo.booked_before(utc("2024-05-31T15:00:00")) == utc("2024-05-31T15:00:00")
    assert tokyo.payment_due(utc("2024-05-20T15:00:00")) == date(2024, 6, 20)


def test_what_is_withdrawable() -> None:
    calendar = WithdrawalCalendar()
    assert calendar.booked_before(utc("2024-05-15T10:00:00")) == utc("2024-05-01T00:00:00")
    assert WithdrawalCalendar(preceding_months_only=False).booked_before(utc("2024-05-15")) is None
    assert calendar.withheld_note(utc("2024-12-15T10:00:00")) == (
        "money booked since 1 December 2024 becomes withdrawable on 1 January 2025"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 201, "must be at most 200 characters"),
        ("TR\x00-1", "must not contain control or invisible characters"),
        ("TR\u202e-1", "must not contain control or invisible characters"),
    ],
)
def test_operator_notes(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{problem}") as caught:
        operator_note(text, field="reference", max_length=200)
    assert caught.value.field == "reference"
    assert operator_note("  TR-1  ", field="reference", max_length=200) == "TR-1"
