"""The Postbacks page: the publisher's endpoints (kind, URL, events, enabled or not; never a
secret), each with its "Send a test event" button; the delivery log, newest first, filtered
by status, event and endpoint and paged with a ``before`` cursor, each delivery with its
attempts folded in a ``<details>`` (time, outcome, status code, latency in ms, the
response's first bytes); the replay buttons. Every form that changes something is a POST
carrying the session's CSRF token and the page's filters, so its redirect comes back here.

An endpoint's URL, an error and a response's bytes come from outside and are escaped; a
response's invisible and control characters (but new lines and tabs) are shown as U+FFFD."""

from __future__ import annotations

from datetime import datetime
from html import escape
from urllib.parse import urlencode

from app.core.chars import is_refused
from app.dashboard.inputs import plural
from app.dashboard.layout import attr, notice, page, table
from app.dashboard.postback_log import EVENTS, STATUSES, LogFilter, PostbacksView
from app.dashboard.sessions import PATH
from app.postbacks.deliveries import AttemptRecord, Delivery
from app.postbacks.endpoints import Endpoint

HERE = f"{PATH}/postbacks"
# What each status means to the publisher reading the log.
STATUS_TEXT = {
    "pending": "pending",
    "delivered": "delivered",
    "failed": "failed: retries ran out",
}
OUTCOME_TEXT = {"delivered": "delivered", "retry": "failed, retried", "failed": "failed, gave up"}


def page_url(filters: LogFilter, **more: str | int | None) -> str:
    """The page's address with ``filters`` and ``more`` (None: left out)."""
    fields = {**filters.fields(), **{k: str(v) for k, v in more.items() if v is not None}}
    return f"{HERE}?{urlencode(fields)}" if fields else HERE


def hidden(view: PostbacksView, *, before: bool = True) -> str:
    """A form's hidden fields: the CSRF token and the page's filters (and cursor), for the
    redirect back to this same view."""
    fields = {"csrf": view.csrf, **view.filters.fields()}
    if before and view.before is not None:
        fields["before"] = str(view.before)
    return "".join(
        f'<input type="hidden" name="{name}" value="{attr(value)}">'
        for name, value in fields.items()
    )


def _time(at: datetime | None, view: PostbacksView) -> str:
    return "" if at is None else f"{at.astimezone(view.tz):%Y-%m-%d %H:%M:%S}"


def _visible(text: str) -> str:
    """Text from a receiver, escaped, with its invisible and control characters (but new
    lines and tabs) shown as U+FFFD: they could hide or reorder what the page shows."""
    shown = "".join("\ufffd" if c not in "\n\t" and is_refused(c) else c for c in text)
    return escape(shown)


def _endpoint_row(e: Endpoint, view: PostbacksView) -> str:
    state = "enabled" if e.active else f"disabled since {_time(e.disabled_at, view)}"
    test = (
        f'<form class="inline" method="post" action="{HERE}/endpoints/{e.id}/test">'
        f"{hidden(view)}"
        '<button type="submit" class="quiet" data-action="test">Send a test event</button>'
        "</form>"
    )
    return (
        f'<tr data-endpoint="{e.id}" data-active="{str(e.active).lower()}"><td>{e.id}</td>'
        f"<td>{escape(e.kind)}</td>"
        f'<td class="wrap">{escape(e.url)}</td>'
        f'<td class="wrap">{escape(", ".join(e.events))}</td>'
        f'<td class="{"status-active" if e.active else "status-disabled"}">{escape(state)}</td>'
        f'<td class="actions">{test}</td></tr>'
    )


def _attempt(t: AttemptRecord, view: PostbacksView) -> str:
    said = [OUTCOME_TEXT.get(t.outcome, t.outcome)]
    if t.status_code is not None:
        said.append(f"HTTP {t.status_code}")
    said.append(f"{t.latency_ms:,} ms")
    error = f' <span class="error-text">{escape(t.error)}</span>' if t.error else ""
    response = f'<pre class="response">{_visible(t.response)}</pre>' if t.response else ""
    return (
        f'<li data-outcome="{attr(t.outcome)}" data-status-code="{t.status_code or ""}">'
        f"<span>{_time(t.at, view)}</span> {escape(' · '.join(said))}{error}{response}</li>"
    )


def _attempts(d: Delivery, view: PostbacksView) -> str:
    """The count since it was queued (or replayed), and every attempt ever, folded."""
    if not d.tries:
        return f"{d.attempts}"
    tries = "".join(_attempt(t, view) for t in d.tries)
    return (
        f'{d.attempts} <details class="attempts"><summary>'
        f"{plural(len(d.tries), 'attempt')} in the log</summary><ol>{tries}</ol></details>"
    )


def _replay(d: Delivery, view: PostbacksView) -> str:
    if d.status == "pending":  # it is sent when due: a replay would change nothing
        return ""
    return (
        f'<form class="inline" method="post" action="{HERE}/deliveries/{d.id}/replay">'
        f'{hidden(view)}<button type="submit" class="quiet" data-action="replay">Replay'
        "</button></form>"
    )


def _delivery_row(d: Delivery, view: PostbacksView) -> str:
    status = STATUS_TEXT.get(d.status, d.status)
    if d.next_attempt_at is not None:
        status = f"{status}, next attempt {_time(d.next_attempt_at, view)}"
    answer = "" if d.last_status_code is None else f"HTTP {d.last_status_code}"
    if d.last_error:
        answer = f"{answer}: {d.last_error}" if answer else d.last_error
    return (
        f'<tr data-delivery="{d.id}" data-status="{attr(d.status)}"><td>{d.id}</td>'
        f"<td>{escape(d.event)}</td><td>{d.event_id}</td><td>{d.endpoint_id}</td>"
        f"<td>{escape(status)}</td>"
        f'<td class="wrap attempts-cell">{_attempts(d, view)}</td>'
        f'<td class="wrap">{escape(answer)}</td><td>{_time(d.delivered_at, view)}</td>'
        f'<td class="actions">{_replay(d, view)}</td></tr>'
    )


def _select(name: str, label: str, chosen: str | None, options: list[tuple[str, str]]) -> str:
    items = "".join(
        f'<option value="{attr(value)}"{" selected" if value == (chosen or "") else ""}>'
        f"{escape(words)}</option>"
        for value, words in [("", "any"), *options]
    )
    return f'<label>{label} <select id="f-{name}" name="{name}">{items}</select></label>'


def _filter_form(view: PostbacksView) -> str:
    f = view.filters
    endpoint = None if f.endpoint_id is None else str(f.endpoint_id)
    ids = [(str(e.id), f"{e.id}: {e.kind}") for e in view.endpoints]
    return (
        f'<form class="range postbacks-filter" method="get" action="{HERE}">'
        + _select("status", "Status", f.status, [(s, s) for s in STATUSES])
        + _select("event", "Event", f.event, [(e, e) for e in EVENTS])
        + _select("endpoint", "Endpoint", endpoint, ids)
        + '<button type="submit">Show</button></form>'
    )


def _replay_failed(view: PostbacksView) -> str:
    f = view.filters
    which = [f"endpoint {f.endpoint_id}"] if f.endpoint_id is not None else []
    which += [f"event {f.event}"] if f.event is not None else []
    scope = f" (only {' and '.join(which)})" if which else ""
    return (
        f'<form class="inline" id="replay-failed" method="post" action="{HERE}/replay-failed">'
        f"{hidden(view, before=False)}"
        f'<button type="submit" class="quiet" data-action="replay-failed">Replay every failed '
        f"delivery{escape(scope)}</button></form>"
    )


def _pages(view: PostbacksView) -> str:
    links = []
    if view.before is not None:
        links.append(f'<a id="newest" href="{attr(page_url(view.filters))}">Newest</a>')
    if view.next_before is not None:
        older = page_url(view.filters, before=view.next_before)
        links.append(f'<a id="next-page" href="{attr(older)}">Older deliveries</a>')
    return f'<p class="pages">{" · ".join(links)}</p>' if links else ""


def _log(view: PostbacksView) -> str:
    head = (
        "Id", "Event", "Event id", "Endpoint", "Status", "Attempts", "Last answer",
        f"Delivered ({view.zone})", "Actions",
    )  # fmt: skip
    rows = [_delivery_row(d, view) for d in view.deliveries]
    filtered = view.filters.fields() or view.before is not None
    nothing = "No delivery matches these filters." if filtered else "No deliveries yet."
    return (
        '<h2>Delivery log</h2><p class="hint">Newest first; times are in '
        f"{escape(view.zone)}. Attempts: since the delivery was queued or last replayed; "
        "the log keeps every one. A replay sends it again with the same event id.</p>"
        f"{_filter_form(view)}<p>{_replay_failed(view)}</p>"
        f"{table('deliveries', head, rows, nothing)}{_pages(view)}"
    )


def postbacks_page(view: PostbacksView, outcome: str = "") -> str:
    """The page; ``outcome``: what a form just did, in words."""
    head = ("Id", "Kind", "URL", "Events", "State", "Test")
    rows = [_endpoint_row(e, view) for e in view.endpoints]
    nothing = (
        "No endpoints yet: create one with the API (POST /api/v1/postbacks/endpoints, "
        "docs/postbacks.md)."
    )
    told = notice(outcome, key="outcome") if outcome else ""
    return page(
        "Postbacks",
        view.publisher_name,
        view.csrf,
        "postbacks",
        f"<h2>Postbacks</h2>{told}"
        '<p class="hint">Where clicktrack tells you, server to server, what happened to the '
        "orders your clicks brought. A test event carries made-up order values; a disabled "
        "endpoint's waits until it is enabled again.</p>"
        f"{table('endpoints', head, rows, nothing)}{_log(view)}",
    )
