"""The two kinds of month the dashboard names, each with its own label so a reader never
takes one for the other: a *calendar month* (the 1st to its last day: the estimated
commission, the income of last month, withdrawals) and a *calculation period* (the 10th of a
month to the 9th of the next: commission rates and the income table, docs/commissions.md).
Both are named ``YYYY-MM`` in the API and the CSVs; here they are always spelled out."""

from __future__ import annotations

from datetime import date

from app.money.periods import Month, Period

DASH = "\N{EN DASH}"  # between the two ends of a range, as typeset


def _day(day: date, *, year: bool) -> str:
    return f"{day.day} {day:%b %Y}" if year else f"{day.day} {day:%b}"


def calendar_month(month: Month) -> str:
    """``Calendar month October 2026``."""
    return f"Calendar month {date(month.year, month.month, 1):%B %Y}"


def period_days(period: Period) -> str:
    """``10 Oct - 9 Nov 2026`` (an en dash); the first year too across a new year."""
    return days(period.start_date, period.last_date)


def calculation_period(period: Period) -> str:
    """``Calculation period 10 Oct - 9 Nov 2026`` (an en dash)."""
    return f"Calculation period {period_days(period)}"


def days(first: date, last: date) -> str:
    """``1 Nov - 30 Nov 2026`` (an en dash): a range of days, never mistaken for a month or
    a period; the first year too when the years differ; one day is shown once (``1 Dec
    2026``)."""
    if first == last:
        return _day(last, year=True)
    return f"{_day(first, year=first.year != last.year)} {DASH} {_day(last, year=True)}"


def calculation_period_html(period: Period) -> str:
    """``calculation_period`` for a table cell: the kind on a small line of its own above the
    days, so a phone's narrow column still says which it is."""
    return f'<span class="kind">Calculation period </span>{period_days(period)}'
