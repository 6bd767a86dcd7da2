"""The link builder ("Get Links"): pick one of the publisher's active links, fill the
tracking strings (af, cn, cv, dp), get the tracking URL to copy and its QR code.

The URL is a read-only text field, selectable without any script; the copy button is the
one thing ``static/copy.js`` adds (it stays hidden where scripts do not run). The QR code is
inline SVG: nothing is fetched for it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from app.dashboard.layout import attr, empty, notice, page
from app.dashboard.link_actions import Built
from app.dashboard.links_page import Frame
from app.dashboard.sessions import PATH
from app.links.model import Link

FIELDS = (
    ("af", "af: sub-affiliate tracking id"),
    ("cn", "cn: campaign id"),
    ("cv", "cv: creative id"),
    ("dp", "dp: dynamic parameter"),
)
MAX_VALUE = 128  # the redirect's limit for a tracking string
_SIZE = re.compile(r'<svg ([^>]*?)width="(\d+)" height="(\d+)"')


@dataclass(frozen=True)
class Asked:
    """What the builder's form sent: the link's code and the tracking strings."""

    code: str
    values: dict[str, str | None]


def inline_svg(document: str, label: str) -> str:
    """An SVG document as an element of the page: without its XML declaration, and with a
    ``viewBox`` so the stylesheet can scale it (the encoder writes a fixed width only)."""
    body = document[document.index("<svg") :]
    return _SIZE.sub(
        lambda m: (
            f'<svg {m.group(1)}viewBox="0 0 {m.group(2)} {m.group(3)}" role="img" '
            f'aria-label="{attr(label)}" width="{m.group(2)}" height="{m.group(3)}"'
        ),
        body,
        count=1,
    )


def _picker(links: Sequence[Link], asked: Asked) -> str:
    options = "".join(
        f'<option value="{attr(link.code)}"{" selected" if link.code == asked.code else ""}>'
        f"{escape(link.code)} \N{EM DASH} {escape(link.destination[:80])}</option>"
        for link in links
    )
    return (
        f'<label for="code">Link</label><select id="code" name="code" required>{options}</select>'
    )


def _fields(asked: Asked, wrong: str | None) -> str:
    invalid = ' aria-invalid="true" autofocus'
    cells = "".join(
        f'<label for="{name}">{escape(text)}<input id="{name}" name="{name}" '
        f'maxlength="{MAX_VALUE}" autocomplete="off" spellcheck="false" '
        f'value="{attr(asked.values.get(name) or "")}"{invalid if name == wrong else ""}>'
        "</label>"
        for name, text in FIELDS
    )
    return f'<div class="fields">{cells}</div>'


def _result(built: Built) -> str:
    return (
        '<section class="panel result" id="result">'
        '<div class="url"><label for="tracking-url">Your tracking URL: select it and copy'
        "</label>"
        f'<textarea id="tracking-url" readonly rows="3" spellcheck="false">'
        f"{escape(built.url)}</textarea>"
        '<button type="button" class="copy" data-copy="tracking-url" hidden>Copy</button>'
        '<p class="hint">Share it as it is: each click records the tracking strings.</p>'
        "</div>"
        f'<div class="qr" id="qr">{inline_svg(built.qr_svg, "QR code of the tracking URL")}'
        "</div></section>"
    )


def builder_page(
    links: Sequence[Link],
    frame: Frame,
    asked: Asked,
    built: Built | None = None,
    problem: tuple[str | None, str] | None = None,
) -> str:
    """The form, and the URL and QR code built (``built``) or why not (``problem``: the
    field at fault and the message)."""
    if not links:
        content = empty("No active link to build on: create one with the API first.", "builder")
    else:
        wrong, said = problem if problem else (None, "")
        content = (
            (notice(said, error=True, key="outcome") if said else "")
            + f'<form class="panel stack wide" method="get" action="{PATH}/links/build">'
            + _picker(links, asked)
            + _fields(asked, wrong)
            + '<button type="submit">Get link</button></form>'
            + (_result(built) if built else "")
        )
    return page(
        "Get Links",
        frame.publisher_name,
        frame.csrf,
        "links",
        f"<h2>Get Links</h2>{content}",
        scripts=("copy.js",),
    )
