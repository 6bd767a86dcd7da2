"""The Traffic page: the publisher's clicks broken down by one dimension (country, device,
browser, OS, referrer host, language; or day, link, af, cn, cv) over a range of days,
narrowed by filters: a horizontal bar chart of the values with the most clicks (the rest
summed as "Other"), a table of every value with its share of the clicks and the totals, and
the same breakdown as a CSV download. Every value comes from the public (a referrer host, a
tracking string) and is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import urlencode

from app.dashboard import charts, labels
from app.dashboard.breakdown import BY, FILTERS, Breakdown, Line
from app.dashboard.inputs import plural
from app.dashboard.layout import attr, page, table
from app.dashboard.sessions import PATH

CHART_BARS = 10  # the values drawn; the others make one "Other" bar
HEAD = ("Clicks", "Billable", "Unique", "Flagged", "Share of clicks")


def noun(found: Breakdown) -> str:
    """The dimension's name within a sentence: "country", "OS"."""
    name = BY[found.asked.by]
    return name if name.isupper() else name.lower()


def share_text(part: Line, total: int) -> str:
    return f"{part.share(total) * 100:.2f} %"


def _query(found: Breakdown) -> dict[str, str]:
    """The page's own query: the range, the dimension, the filters."""
    return {
        "from": found.first.isoformat(),
        "to": found.last.isoformat(),
        "by": found.asked.by.value,
        **found.asked.filters,
    }


def _form(found: Breakdown) -> str:
    """The dimension, the range and the filters (folded away unless one is set)."""
    options = "".join(
        f'<option value="{d.value}"{" selected" if d is found.asked.by else ""}>{name}</option>'
        for d, name in BY.items()
    )
    fields = "".join(
        f'<label for="f-{name}">{escape(words)}<input id="f-{name}" name="{name}" '
        f'maxlength="128" autocomplete="off" spellcheck="false" '
        f'value="{attr(found.asked.filters.get(name, ""))}"></label>'
        for name, words in FILTERS.items()
    )
    folded = " open" if found.asked.filters else ""
    return (
        f'<form class="range breakdown-form" method="get" action="{PATH}/traffic">'
        f'<label>By <select id="by" name="by">{options}</select></label>'
        f'<label>From <input type="date" name="from" value="{found.first}"></label>'
        f'<label>To <input type="date" name="to" value="{found.last}"></label>'
        '<button type="submit">Show</button>'
        f'<span id="time-zone" data-time-zone="{attr(found.time_zone)}">'
        f"Days are in {escape(found.time_zone)}.</span>"
        f'<details class="filters"{folded}><summary>Filters: only clicks with these exact '
        'values ("unknown": clicks stored without it)</summary>'
        f'<div class="fields">{fields}</div></details></form>'
    )


def _narrowed(found: Breakdown) -> str:
    if not found.asked.filters:
        return ""
    said = ", ".join(f"{name} {value}" for name, value in found.asked.filters.items())
    plain = urlencode({k: v for k, v in _query(found).items() if k in ("from", "to", "by")})
    return (
        f'<p class="hint" id="filtered">Only clicks with {escape(said)}. '
        f'<a href="{PATH}/traffic?{attr(plain)}">Show all clicks</a></p>'
    )


def _bar(line: Line, total: int, key: str) -> charts.Bar:
    share = share_text(line, total)
    return charts.Bar(
        line.label,
        [line.billable, line.flagged],
        {
            "value": line.value,
            "clicks": line.clicks,
            "billable": line.billable,
            "unique": line.unique,
            "flagged": line.flagged,
            "share": f"{line.share(total):.6f}",
            "key": key,
        },
        f"{line.label}: {plural(line.clicks, 'click')} ({line.billable:,} billable, "
        f"{line.flagged:,} flagged), {line.unique:,} unique; {share} of clicks",
    )


def _other(lines: Sequence[Line]) -> Line:
    clicks, flagged = sum(n.clicks for n in lines), sum(n.flagged for n in lines)
    unique = sum(n.unique for n in lines)
    named = f"Other ({plural(len(lines), 'value')})"
    return Line("", named, clicks, clicks - flagged, unique, flagged)


def _chart(found: Breakdown) -> str:
    name = noun(found)
    total = found.totals.clicks
    shown = list(found.lines[:CHART_BARS])
    bars = [_bar(line, total, "value") for line in shown]
    rest = list(found.lines[CHART_BARS:]) + ([found.rest] if found.rest else [])
    if rest:
        bars.append(_bar(_other(rest), total, "other"))
    caption = f"Clicks by {name}" + (
        f": the top {len(shown)}, the other values as one bar" if rest else ""
    )
    drawn = charts.hbars(f"Clicks by {name}", bars, ["billable", "flagged"])
    return (
        f'<figure id="breakdown-chart"><figcaption>{escape(caption)}</figcaption>{drawn}</figure>'
    )


def _row(line: Line, total: int, kind: str) -> str:
    return (
        f'<tr class="{kind}" data-value="{attr(line.value)}">'
        f"<td>{escape(line.label)}</td><td>{line.clicks:,}</td><td>{line.billable:,}</td>"
        f"<td>{line.unique:,}</td><td>{line.flagged:,}</td><td>{share_text(line, total)}</td>"
        "</tr>"
    )


def _table(found: Breakdown, nothing: str) -> str:
    total = found.totals.clicks
    rows = [_row(line, total, "value") for line in found.lines]
    if found.rest is not None:
        rows.append(_row(found.rest, total, "other"))
    if rows:
        rows.append(_row(found.totals, total, "total"))
    return table("breakdown", (BY[found.asked.by], *HEAD), rows, nothing)


def _download(found: Breakdown) -> str:
    asked = _query(found)
    by = asked.pop("by")
    href = f"{PATH}/export/traffic.csv?{urlencode({**asked, 'group_by': by, 'bom': 'true'})}"
    days = escape(labels.days(found.first, found.last))
    return (
        '<section class="downloads" id="breakdown-download">'
        f'<a class="button" id="download-breakdown" href="{attr(href)}" download>'
        f"Download CSV: traffic by {escape(noun(found))}, days {days}</a>"
        "</section>"
    )


def breakdown_page(found: Breakdown) -> str:
    """The whole page; a range without clicks says so in words, with no chart."""
    name = noun(found)
    filtered = " with these filters" if found.asked.filters else ""
    nothing = f"No clicks in this range{filtered}."
    span = labels.days(found.first, found.last)
    chart = _chart(found) if found.lines else ""
    return page(
        f"Traffic by {name}",
        found.publisher_name,
        found.csrf,
        "traffic",
        f"<h2>Traffic by {escape(name)}, {escape(span)}</h2>"
        f"{_form(found)}{_narrowed(found)}{chart}{_table(found, nothing)}{_download(found)}",
    )
