"""The overview page, rendered on the server: the figures, the charts, the tables and the
downloads. Every value from outside (tracking strings, names) is escaped; a section with no
data says so in words (``layout.empty``); months and calculation periods carry their own
labels (``labels``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from html import escape
from urllib.parse import urlencode

from app.dashboard import charts, labels
from app.dashboard.inputs import plural
from app.dashboard.layout import attr, empty, money, page, table
from app.dashboard.sessions import PATH
from app.money.overrides import RateSource
from app.reports.balance import BalanceStatus
from app.reports.income import PeriodIncome
from app.reports.overview import OrderCounts, Overview, conversion_rate
from app.traffic.counts import TrafficRow, empty_row

NO_CLICKS = "No clicks yet in this range."


def rate_text(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f} %"


def tracking_label(value: str | None) -> str:
    if value is None:
        return "(none)"
    return value if value else "(empty)"


@dataclass(frozen=True)
class TrackingIdRow:
    af: str | None
    clicks: int
    unique_clicks: int
    billable: int
    orders: int
    completed: int

    @property
    def conversion(self) -> Decimal | None:
        return conversion_rate(self.completed, self.billable)


@dataclass(frozen=True)
class DashboardView:
    publisher_name: str
    csrf: str
    first: date
    last: date
    time_zone: str  # the period time zone: every day and time shown is on its clock
    overview: Overview
    days: Sequence[date]
    traffic: dict[date, TrafficRow]
    orders: dict[date, OrderCounts]
    top_ids: Sequence[TrackingIdRow]
    periods: Sequence[PeriodIncome]
    balance: BalanceStatus  # the balance and what of it can be withdrawn now


def _card(label: str, value: str, note: str = "", key: str = "") -> str:
    small = f"<small>{escape(note)}</small>" if note else ""
    return (
        f'<div class="card" data-figure="{attr(key)}">'
        f"<span>{escape(label)}</span><strong>{escape(value)}</strong>{small}</div>"
    )


def _balance_card(b: BalanceStatus) -> str:
    """The account balance, the part of it withdrawable now and, when no withdrawal can be
    requested, why and from when (days in the period time zone)."""
    reasons = b.reasons()
    if reasons:
        why = "No withdrawal now: " + "; ".join(reasons) + "."
    else:
        why = (
            f"A withdrawal can be requested now (until day {b.calendar.last_day} of the "
            f"month; fee {money(b.fee)})."
        )
    return (
        f'<div class="card" data-figure="balance">'
        f"<span>Account balance</span><strong>{escape(money(b.balance))}</strong>"
        f'<small id="withdrawable" data-amount="{b.withdrawable}" '
        f'data-can-withdraw="{str(b.can_withdraw).lower()}">'
        f"{escape(money(b.withdrawable))} withdrawable now</small>"
        f'<small id="withdrawal-note" data-next-request-day="{b.next_request_day}">'
        f'{escape(why)}</small><a href="{PATH}/withdrawals">Withdrawals</a></div>'
    )


def _cards(view: DashboardView) -> str:
    o, span = view.overview, labels.days(view.first, view.last)
    cards = [
        _card(
            "Estimated commission, this calendar month",
            money(o.this_month_estimated_commission),
            labels.calendar_month(o.this_month),
            "estimated",
        ),
        _card(
            "Income, last calendar month",
            money(o.income_last_month),
            labels.calendar_month(o.last_month),
            "income",
        ),
        _balance_card(view.balance),
        _card(
            "Advertisement clicks",
            f"{o.billable_clicks:,}",
            f"{o.clicks:,} in all, {o.flagged_clicks:,} flagged; {span}",
            "clicks",
        ),
        _card(
            "Conversion rate",
            rate_text(o.conversion_rate),
            f"{o.orders.completed:,} completed (within 60 days) of "
            f"{plural(o.orders.orders, 'order')}",
            "conversion",
        ),
        _card("Total amount", money(o.orders.amount), f"sales of {span}", "amount"),
    ]
    return f'<section class="cards">{"".join(cards)}</section>'


def _figure(key: str, caption: str, drawn: str | None, nothing: str) -> str:
    """A chart, or ``nothing`` in words where it would only draw empty axes."""
    shown = drawn if drawn is not None else empty(nothing, key)
    return f'<figure id="{key}"><figcaption>{escape(caption)}</figcaption>{shown}</figure>'


def _day_charts(
    view: DashboardView, traffic: Sequence[TrafficRow], orders: Sequence[OrderCounts]
) -> tuple[str, str, str]:
    """The three charts by day: clicks, orders, conversion rate."""
    days, zone = [d.isoformat() for d in view.days], view.time_zone
    clicks = charts.stacked_bars(
        f"Clicks per day ({zone})",
        days,
        [
            charts.Series("billable", "billable", [t.billable for t in traffic]),
            charts.Series("flagged", "flagged", [t.flagged for t in traffic]),
        ],
    )
    ordered = charts.stacked_bars(
        f"Orders per day ({zone})",
        days,
        [
            charts.Series("completed", "completed", [o.completed for o in orders]),
            charts.Series("other", "other", [o.orders - o.completed for o in orders]),
        ],
    )
    rates = [
        float(conversion_rate(o.completed, t.billable) or 0)
        for o, t in zip(orders, traffic, strict=True)
    ]
    conversion = charts.lines(
        f"Conversion rate per day ({zone})",
        days,
        [charts.Series("completed orders / billable clicks", "rate", rates)],
        charts.percent,
        whole_steps=False,
    )
    return clicks, ordered, conversion


def _charts(view: DashboardView) -> str:
    zero = empty_row()
    traffic = [view.traffic.get(d, zero) for d in view.days]
    nothing = OrderCounts(0, 0, Decimal(0))
    orders = [view.orders.get(d, nothing) for d in view.days]
    clicks, ordered, conversion = _day_charts(view, traffic, orders)
    ranking = charts.ranking(
        "Top tracking ids by billable clicks",
        [(tracking_label(r.af), r.billable) for r in view.top_ids],
        "billable",
    )
    any_clicks = any(t.billable or t.flagged for t in traffic)
    any_billable = any(t.billable for t in traffic)
    no_rate = "No billable clicks in this range, so no conversion rate yet."
    return (
        '<section class="charts">'
        + _figure("clicks-chart", "Clicks", clicks if any_clicks else None, NO_CLICKS)
        + _figure(
            "orders-chart",
            "Orders",
            ordered if any(o.orders for o in orders) else None,
            "No orders yet in this range.",
        )
        + _figure("conversion-chart", "Conversion", conversion if any_billable else None, no_rate)
        + _figure(
            "top-ids-chart", "Top tracking ids (af)", ranking if view.top_ids else None, NO_CLICKS
        )
        + "</section>"
    )


def _top_table(rows: Sequence[TrackingIdRow]) -> str:
    body = [
        f'<tr data-af="{attr(tracking_label(r.af))}">'
        f"<td>{escape(tracking_label(r.af))}</td><td>{r.clicks:,}</td><td>{r.billable:,}</td>"
        f"<td>{r.unique_clicks:,}</td><td>{r.orders:,}</td><td>{r.completed:,}</td>"
        f"<td>{rate_text(r.conversion)}</td></tr>"
        for r in rows
    ]
    head = ("Tracking id (af)", "Clicks", "Billable", "Unique", "Orders", "Completed", "Conversion")
    return table("top-ids", head, body, NO_CLICKS)


def _has_income(p: PeriodIncome) -> bool:
    return bool(p.orders or p.completed_sales or p.net or p.estimated_commission)


def _rates_text(p: PeriodIncome) -> str:
    """Whose rates the period's orders earn: the plan's, or a payout override's (and how
    much of the credit was at them)."""
    if p.rate_source is RateSource.plan:
        return "plan"
    if p.credited_at_override:
        return f"your own rates ({money(p.credited_at_override)} credited at them)"
    return "your own rates"


def _income_table(periods: Sequence[PeriodIncome]) -> str:
    rows = [
        f'<tr data-period="{p.period}"><td>{labels.calculation_period_html(p.period)}</td>'
        f"<td>{p.state}</td><td>{p.orders:,}</td><td>{money(p.completed_sales)}</td>"
        f"<td>{money(p.net)}</td>"
        f"<td>{'' if p.estimated_commission is None else money(p.estimated_commission)}</td>"
        f"<td>{_rates_text(p)}</td></tr>"
        for p in reversed(periods)
    ]
    if not any(_has_income(p) for p in periods):
        rows = []
    head = ("Calculation period (10th to 9th)", "State", "Orders", "Completed sales")
    return table(
        "income",
        (*head, "Net income", "Estimated commission", "Rates"),
        rows,
        f"No income yet in the last {plural(len(periods), 'calculation period')} (10th to 9th).",
    )


def _downloads(view: DashboardView) -> str:
    span = {"from": view.first.isoformat(), "to": view.last.isoformat(), "bom": "true"}
    traffic = urlencode({**span, "group_by": "day,link,af,cn,cv"})
    days = escape(labels.days(view.first, view.last))
    return (
        '<section class="downloads"><h2>Downloads (CSV)</h2>'
        f'<a class="button" id="download-orders" href="{PATH}/export/orders.csv?'
        f'{attr(urlencode(span))}" download>Live Order Tracking, days {days}</a>'
        f'<a class="button" id="download-traffic" href="{PATH}/export/traffic.csv?'
        f'{attr(traffic)}" download>Traffic by day, link and tracking id, days {days}</a>'
        f'<a class="button" id="download-income" href="{PATH}/export/income.csv?bom=true" '
        "download>Income by calculation period (10th to 9th), the last 12</a></section>"
    )


def dashboard_page(view: DashboardView) -> str:
    range_form = (
        f'<form class="range" method="get" action="{PATH}">'
        f'<label>From <input type="date" name="from" value="{view.first}"></label>'
        f'<label>To <input type="date" name="to" value="{view.last}"></label>'
        '<button type="submit">Show</button>'
        f'<span id="time-zone" data-time-zone="{attr(view.time_zone)}">'
        f"Days and times are in {escape(view.time_zone)}. "
        f"{plural(len(view.days), 'day')}.</span></form>"
    )
    return page(
        "Overview",
        view.publisher_name,
        view.csrf,
        "overview",
        f"{range_form}{_cards(view)}{_charts(view)}"
        f"<h2>Top tracking ids</h2>{_top_table(view.top_ids)}"
        f"<h2>Income by calculation period</h2>{_income_table(view.periods)}"
        f"{_downloads(view)}",
    )
