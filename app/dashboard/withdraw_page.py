"""The withdrawals page: the balance and the part of it withdrawable now, the request form
(POST, with the session's CSRF token), the outcome of a request in plain words, and the
publisher's withdrawals with their statuses. Days are those of the period time zone."""

from __future__ import annotations

from datetime import datetime
from html import escape

from app.dashboard.inputs import plural
from app.dashboard.layout import attr, money, notice, page, table
from app.dashboard.sessions import PATH
from app.dashboard.withdraw import WithdrawalsView
from app.money.withdrawals import Withdrawal
from app.reports.balance import day_text

# What each status means to the publisher waiting for the money.
STATUS_TEXT = {
    "requested": "requested: waiting for approval",
    "approved": "approved: waiting to be paid",
    "paid": "paid",
    "rejected": "rejected: the amount is back in the balance",
}


def requested_text(made: Withdrawal, view: WithdrawalsView) -> str:
    """The notice after a request was accepted."""
    due = view.calendar.payment_due(made.requested_at)
    return (
        f"Withdrawal {made.id} requested: {money(made.amount)} taken from the balance, of "
        f"which {money(made.payout)} will be paid to you and {money(made.fee)} is the fee. "
        f"Payment is due around {day_text(due)}."
    )


def _day(at: datetime | None, view: WithdrawalsView) -> str:
    return "" if at is None else day_text(at.astimezone(view.calendar.tz).date())


def _row(w: Withdrawal, view: WithdrawalsView) -> str:
    note = w.payment_reference or w.reject_reason or ""
    due = "" if w.status == "rejected" else day_text(view.calendar.payment_due(w.requested_at))
    return (
        f'<tr data-withdrawal="{w.id}" data-status="{attr(w.status)}"><td>{w.id}</td>'
        f"<td>{escape(_day(w.requested_at, view))}</td><td>{money(w.amount)}</td>"
        f"<td>{money(w.fee)}</td><td>{money(w.payout)}</td>"
        f"<td>{escape(STATUS_TEXT.get(w.status, w.status))}</td><td>{escape(due)}</td>"
        f"<td>{escape(note)}</td></tr>"
    )


def _form(view: WithdrawalsView) -> str:
    b = view.balance
    reasons = b.reasons()
    state = (
        "No withdrawal now: " + "; ".join(reasons) + "."
        if reasons
        else f"A withdrawal can be requested now, until day {b.calendar.last_day} of the month."
    )
    return (
        '<section class="withdraw">'
        f'<p class="figure">Account balance <strong id="balance">{money(b.balance)}</strong></p>'
        f'<p class="figure">Withdrawable now <strong id="withdrawable" '
        f'data-amount="{b.withdrawable}">{money(b.withdrawable)}</strong></p>'
        f'<p id="withdrawal-state" data-can-withdraw="{str(b.can_withdraw).lower()}">'
        f"{escape(state)}</p>"
        f'<form method="post" action="{PATH}/withdrawals" class="stack">'
        f'<input type="hidden" name="csrf" value="{attr(view.csrf)}">'
        '<label for="amount">Amount in US$ (fee included; leave empty for everything '
        "withdrawable)</label>"
        '<input id="amount" name="amount" inputmode="decimal" autocomplete="off" '
        f'maxlength="20" placeholder="{b.withdrawable}">'
        '<button type="submit">Request a withdrawal</button></form>'
        f'<p class="hint">The fee of {money(b.fee)} comes out of the amount; the rest is '
        f"paid about {plural(view.calendar.payment_days, 'day')} after the request. "
        "A withdrawal needs "
        f"more than {money(b.minimum_balance)} withdrawable. Money booked this calendar month "
        "becomes withdrawable on the 1st of the next.</p></section>"
    )


def withdrawals_page(view: WithdrawalsView, outcome: str = "", *, refused: bool = False) -> str:
    """The page; ``outcome`` is the result or the refusal of a request just made."""
    head = ("Id", "Requested", "Amount", "Fee", "Paid to you", "Status", "Payment due", "Note")
    rows = [_row(w, view) for w in view.withdrawals]
    told = notice(outcome, error=refused, key="outcome") if outcome else ""
    return page(
        "Withdrawals",
        view.publisher_name,
        view.csrf,
        "withdrawals",
        f"<h2>Withdrawals</h2>{told}{_form(view)}"
        f'<h2>Your withdrawals</h2><p class="hint">Days are in {escape(view.time_zone)}.</p>'
        + table("withdrawals", head, rows, "No withdrawals yet."),
    )
