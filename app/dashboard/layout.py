"""The frame every dashboard page shares: the HTML document, the header with its navigation
and sign-out form, notices, tables in their own scroll box and the words a section shows
when it has nothing to show. Every value from outside is escaped here or by the caller."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from html import escape

from app.dashboard.sessions import PATH
from app.links.model import ECHO_LIMIT, echoed

STYLESHEET = f"{PATH}/static/dashboard.css"
ICON = f"{PATH}/static/favicon.svg"
# A run of text longer than a page repeats (quoted and already cut: up to 3 more characters).
_LONG_RUN = re.compile(rf"\S{{{ECHO_LIMIT + 4},}}")
_CELL = re.compile(r"<td(?=[ >])")

# The pages of the navigation: (key, path, label).
NAV = (
    ("overview", PATH, "Overview"),
    ("traffic", f"{PATH}/traffic", "Traffic"),
    ("links", f"{PATH}/links", "Links"),
    ("withdrawals", f"{PATH}/withdrawals", "Withdrawals"),
    ("postbacks", f"{PATH}/postbacks", "Postbacks"),
)


def attr(value: object) -> str:
    """A value inside a double-quoted attribute."""
    return escape(str(value), quote=True)


def money(value: Decimal) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}US${abs(value):,.2f}"


def layout(title: str, body: str, scripts: Sequence[str] = ()) -> str:
    """The document; ``scripts``: files of ``static/`` the page loads (deferred), which only
    ever add to a page that works without them."""
    tags = "".join(f'<script src="{PATH}/static/{attr(name)}" defer></script>' for name in scripts)
    return (
        "<!doctype html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{escape(title)}</title>'
        f'<link rel="icon" href="{ICON}" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{STYLESHEET}">{tags}</head>'
        f"<body>{body}</body></html>"
    )


def header(publisher_name: str, csrf: str, active: str) -> str:
    """The page's top bar: who is signed in, the pages, and the sign-out form."""
    current = ' aria-current="page"'
    links = "".join(
        f'<a href="{path}"{current if key == active else ""}>{label}</a>'
        for key, path, label in NAV
    )
    return (
        "<header><h1>clicktrack</h1>"
        f'<span class="who">{escape(publisher_name)}</span>'
        f'<nav aria-label="Dashboard pages">{links}</nav>'
        f'<form method="post" action="{PATH}/logout">'
        f'<input type="hidden" name="csrf" value="{attr(csrf)}">'
        '<button type="submit" class="link">Sign out</button></form></header>'
    )


def page(
    title: str,
    publisher_name: str,
    csrf: str,
    active: str,
    main: str,
    scripts: Sequence[str] = (),
) -> str:
    """A signed-in page: the header and ``main``."""
    return layout(
        f"{title} · {publisher_name} · clicktrack",
        f"{header(publisher_name, csrf, active)}<main>{main}</main>",
        scripts,
    )


def bounded(text: str) -> str:
    """Words to show, with each run of text longer than ``ECHO_LIMIT`` characters (a caller's own,
    repeated) cut, then "…"."""
    return _LONG_RUN.sub(lambda run: echoed(run.group()), text)


def notice(text: str, *, error: bool = False, key: str = "notice") -> str:
    """The outcome of a form, in plain words: an alert for a refusal, a status otherwise."""
    role, kind = ("alert", "error") if error else ("status", "ok")
    return f'<p class="notice {kind}" id="{attr(key)}" role="{role}">{escape(bounded(text))}</p>'


def empty(text: str, key: str) -> str:
    """What a section with no data says instead of bare axes or an empty table."""
    return f'<p class="empty" id="{attr(key)}-empty">{escape(text)}</p>'


def labelled(row: str, head: Sequence[str]) -> str:
    """A ready ``<tr>`` with each ``<td>`` labelled by its column (``data-label``): on a
    narrow screen each row is a card of labelled cells (``dashboard.css``)."""
    labels = iter(head)
    return _CELL.sub(lambda _: f'<td data-label="{attr(next(labels, ""))}"', row)


def table(key: str, head: Sequence[str], rows: Sequence[str], nothing: str) -> str:
    """A table in its own horizontally scrollable box (a phone scrolls the table, never the
    page; under 600 px its rows stack as cards), or ``nothing`` in words when there are no
    rows. ``rows`` are ready ``<tr>``s, one ``<td>`` per column of ``head``."""
    if not rows:
        return empty(nothing, key)
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(labelled(row, head) for row in rows)
    return (
        f'<div class="table-scroll" tabindex="0" role="region" aria-label="{attr(key)}">'
        f'<table class="stackable" id="{attr(key)}"><thead><tr>{cells}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def login_page(token: str, error: str | None = None) -> str:
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return layout(
        "Sign in · clicktrack",
        '<main class="login"><h1>clicktrack</h1><p>Sign in with your publisher API key.</p>'
        f"{problem}"
        f'<form method="post" action="{PATH}/login" autocomplete="off">'
        f'<input type="hidden" name="csrf" value="{attr(token)}">'
        '<label for="api_key">API key</label>'
        '<input id="api_key" name="api_key" type="password" required maxlength="128" '
        'spellcheck="false" placeholder="ctk_…">'
        '<button type="submit">Sign in</button></form>'
        '<p class="hint">The key is checked once and never stored in your browser: the '
        "session cookie only names a session on the server.</p></main>",
    )


def error_page(message: str) -> str:
    """A request the dashboard cannot answer, said in plain words; a run of text longer than
    ``ECHO_LIMIT`` characters (a caller's own, repeated) is cut, then "…"."""
    return layout(
        "Not possible · clicktrack",
        '<main class="problem"><h1>clicktrack</h1>'
        f'<p class="error" role="alert">{escape(bounded(message))}</p>'
        f'<p><a href="{PATH}">Back to the dashboard</a></p></main>',
    )
