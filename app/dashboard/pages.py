"""The dashboard's HTML, rendered on the server. Every value from outside (tracking strings,
names) is escaped; the pages load nothing but the package's own stylesheet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from html import escape
from urllib.parse import urlencode

from app.dashboard import charts
from app.reports.balance import BalanceStatus
from app.reports.income import PeriodIncome
from app.reports.overview import OrderCounts, Overview, conversion_rate
from app.traffic.counts import TrafficRow

STYLESHEET = "/dashboard/static/dashboard.css"


def money(value: Decimal) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}US${abs(value):,.2f}"


def rate_text(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f} %"


def tracking_label(value: str | None) -> str:
    if value is None:
        return "(none)"
    return value if value else "(empty)"


def layout(title: str, body: str) -> str:
    return (
        "<!doctype html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{escape(title)}</title>'
        f'<link rel="stylesheet" href="{STYLESHEET}"></head>'
        f"<body>{body}</body></html>"
    )


def login_page(token: str, error: str | None = None) -> str:
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return layout(
        "Sign in · clicktrack",
        '<main class="login"><h1>clicktrack</h1><p>Sign in with your publisher API key.</p>'
        f"{problem}"
        '<form method="post" action="/dashboard/login" autocomplete="off">'
        f'<input type="hidden" name="csrf" value="{escape(token, quote=True)}">'
        '<label for="api_key">API key</label>'
        '<input id="api_key" name="api_key" type="password" required maxlength="128" '
        'spellcheck="false" placeholder="ctk_…">'
        '<button type="submit">Sign in</button></form>'
        '<p class="hint">The key is checked once and never stored in your browser: the '
        "session cookie only names a session on the server.</p></main>",
    )


def error_page(message: str) -> str:
    """A request the dashboard cannot answer, said in plain words."""
    return layout(
        "Not possible · clicktrack",
        '<main class="problem"><h1>clicktrack</h1>'
        f'<p class="error" role="alert">{escape(message)}</p>'
        '<p><a href="/dashboard">Back to the dashboard</a></p></main>',
    )


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
        f'<div class="card" data-figure="{escape(key, quote=True)}">'
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
        f"{escape(why)}</small></div>"
    )


def _cards(o: Overview, b: BalanceStatus) -> str:
    return (
        '<section class="cards">'
        + "".join(
            [
                _card(
                    "This month estimated commission",
                    money(o.this_month_estimated_commission),
                    str(o.this_month),
                    "estimated",
                ),
                _card("Income last month", money(o.income_last_month), str(o.last_month), "income"),
                _balance_card(b),
                _card(
                    "Advertisement clicks",
                    f"{o.billable_clicks:,}",
                    f"{o.clicks:,} in all, {o.flagged_clicks:,} flagged",
                    "clicks",
                ),
                _card(
                    "Conversion rate",
                    rate_text(o.conversion_rate),
                    f"{o.orders.completed:,} completed (within 60 days) of "
                    f"{o.orders.orders:,} orders",
                    "conversion",
                ),
                _card("Total amount", money(o.orders.amount), "sales of the range", "amount"),
            ]
        )
        + "</section>"
    )


def _charts(view: DashboardView) -> str:
    labels = [d.isoformat() for d in view.days]
    zero = TrafficRow(None, None, None, None, None, None, 0, 0, 0)
    traffic = [view.traffic.get(d, zero) for d in view.days]
    nothing = OrderCounts(0, 0, Decimal(0))
    orders = [view.orders.get(d, nothing) for d in view.days]
    clicks_chart = charts.stacked_bars(
        f"Clicks per day ({view.time_zone})",
        labels,
        [
            charts.Series("billable", "billable", [t.billable for t in traffic]),
            charts.Series("flagged", "flagged", [t.flagged for t in traffic]),
        ],
    )
    orders_chart = charts.stacked_bars(
        f"Orders per day ({view.time_zone})",
        labels,
        [
            charts.Series("completed", "completed", [o.completed for o in orders]),
            charts.Series("other", "other", [o.orders - o.completed for o in orders]),
        ],
    )
    daily_rates = [
        float(conversion_rate(o.completed, t.billable) or 0)
        for o, t in zip(orders, traffic, strict=True)
    ]
    conversion_chart = charts.lines(
        f"Conversion rate per day ({view.time_zone})",
        labels,
        [charts.Series("completed orders / billable clicks", "rate", daily_rates)],
        charts.percent,
        whole_steps=False,
    )
    ranking = charts.ranking(
        "Top tracking ids by billable clicks",
        [(tracking_label(r.af), r.billable) for r in view.top_ids],
        "billable",
    )
    return (
        '<section class="charts">'
        f'<figure id="clicks-chart"><figcaption>Clicks</figcaption>{clicks_chart}</figure>'
        f'<figure id="orders-chart"><figcaption>Orders</figcaption>{orders_chart}</figure>'
        f'<figure id="conversion-chart"><figcaption>Conversion</figcaption>'
        f"{conversion_chart}</figure>"
        f'<figure id="top-ids-chart"><figcaption>Top tracking ids (af)</figcaption>'
        f"{ranking}</figure></section>"
    )


def _top_table(rows: Sequence[TrackingIdRow]) -> str:
    body = "".join(
        f'<tr data-af="{escape(tracking_label(r.af), quote=True)}">'
        f"<td>{escape(tracking_label(r.af))}</td><td>{r.clicks:,}</td><td>{r.billable:,}</td>"
        f"<td>{r.unique_clicks:,}</td><td>{r.orders:,}</td><td>{r.completed:,}</td>"
        f"<td>{rate_text(r.conversion)}</td></tr>"
        for r in rows
    )
    empty = '<tr><td colspan="7">No clicks in this range.</td></tr>'
    return (
        '<table id="top-ids"><thead><tr><th>Tracking id (af)</th><th>Clicks</th>'
        "<th>Billable</th><th>Unique</th><th>Orders</th><th>Completed</th>"
        f"<th>Conversion</th></tr></thead><tbody>{body or empty}</tbody></table>"
    )


def _income_table(periods: Sequence[PeriodIncome]) -> str:
    rows = "".join(
        f'<tr data-period="{p.period}"><td>{p.period} ({p.period.start_date:%d %b} &ndash; '
        f"{p.period.last_date:%d %b %Y})</td><td>{p.state}</td>"
        f"<td>{p.orders:,}</td><td>{money(p.completed_sales)}</td><td>{money(p.net)}</td>"
        f"<td>{'' if p.estimated_commission is None else money(p.estimated_commission)}</td>"
        "</tr>"
        for p in reversed(periods)
    )
    return (
        '<table id="income"><thead><tr><th>Calculation period (10th to 9th)</th><th>State</th>'
        "<th>Orders</th><th>Completed sales</th><th>Net income</th>"
        f"<th>Estimated commission</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _downloads(view: DashboardView) -> str:
    span = {"from": view.first.isoformat(), "to": view.last.isoformat(), "bom": "true"}
    traffic = urlencode({**span, "group_by": "day,link,af,cn,cv"})
    return (
        '<section class="downloads"><h2>Downloads (CSV)</h2>'
        f'<a class="button" id="download-orders" href="/dashboard/export/orders.csv?'
        f'{escape(urlencode(span), quote=True)}" download>Live Order Tracking</a>'
        f'<a class="button" id="download-traffic" href="/dashboard/export/traffic.csv?'
        f'{escape(traffic, quote=True)}" download>Traffic by day, link and tracking id</a>'
        '<a class="button" id="download-income" href="/dashboard/export/income.csv?bom=true" '
        "download>Income by period</a></section>"
    )


def dashboard_page(view: DashboardView) -> str:
    header = (
        "<header><h1>clicktrack</h1>"
        f'<span class="who">{escape(view.publisher_name)}</span>'
        '<form method="post" action="/dashboard/logout">'
        f'<input type="hidden" name="csrf" value="{escape(view.csrf, quote=True)}">'
        '<button type="submit" class="link">Sign out</button></form></header>'
    )
    range_form = (
        '<form class="range" method="get" action="/dashboard">'
        f'<label>From <input type="date" name="from" value="{view.first}"></label>'
        f'<label>To <input type="date" name="to" value="{view.last}"></label>'
        '<button type="submit">Show</button>'
        f'<span id="time-zone" data-time-zone="{escape(view.time_zone, quote=True)}">'
        f"Days and times are in {escape(view.time_zone)}. {len(view.days)} days.</span></form>"
    )
    return layout(
        f"{view.publisher_name} · clicktrack",
        f"{header}<main>{range_form}{_cards(view.overview, view.balance)}{_charts(view)}"
        f"<h2>Top tracking ids</h2>{_top_table(view.top_ids)}"
        f"<h2>Income by calculation period</h2>{_income_table(view.periods)}"
        f"{_downloads(view)}</main>",
    )
