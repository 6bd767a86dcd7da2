"""The click id on its way out and back: written into the Location for the merchant, read
back from what the merchant reports, stored as a uuid.

Properties: for any destination a link may have, the Location carries the click id exactly
once, readable with a standard URL parser, keeps the destination's own query and fragment,
and is a clean ASCII header value; any text offered as a click id is either a UUID or
refused as an ``EventError``, never another exception.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

import pytest
import uuid_utils
from hypothesis import assume, given
from hypothesis import strategies as st

from app.clicks.record import Click, EventError, decode, encode
from app.edge.linkcache import RedirectTarget
from app.flusher.sink import to_row
from app.links.mirror import EdgeLink
from app.links.model import LinkError, validate_destination

HOSTS = ("example.com", "*.example.com")
PARAM = "aff_click_id"

path_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
query_pairs = st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=12)), max_size=4)


@st.composite
def destinations(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]], str]:
    host = draw(st.sampled_from(["example.com", "shop.example.com", "a.b.example.com"]))
    path = quote(draw(path_text))
    pairs = [(k, v) for k, v in draw(query_pairs) if k != PARAM]
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    fragment = quote(draw(path_text), safe="")
    url = f"https://{host}/{path}" + (f"?{query}" if query else "")
    url += f"#{fragment}" if fragment else ""
    return url, pairs, fragment


@given(destination=destinations(), stale=st.booleans())
def test_the_location_carries_the_click_id_once(
    destination: tuple[str, list[tuple[str, str]], str], stale: bool
) -> None:
    url, pairs, fragment = destination
    if stale:  # a destination that already names the parameter: ours replaces it
        url = url.replace("#", f"{'&' if '?' in url else '?'}{PARAM}=old#", 1)
        if "#" not in url:
            url += f"{'&' if '?' in url else '?'}{PARAM}=old"
    try:
        validate_destination(url, HOSTS)
    except LinkError:
        assume(False)
    click_id = str(uuid_utils.uuid7())
    target = RedirectTarget(EdgeLink(1, "c", 1, url, True, None), PARAM)
    location = target.location(click_id)
    assert location.isascii() and not any(c.isspace() or ord(c) < 0x21 for c in location)
    parts = urlsplit(location)
    assert parse_qs(parts.query)[PARAM] == [click_id]
    assert [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != PARAM
    ] == pairs
    assert parts.fragment == fragment
    assert (parts.scheme, parts.hostname) == ("https", urlsplit(url).hostname)


@given(text=st.text(max_size=60) | st.binary(max_size=40).map(lambda b: b.hex()))
def test_any_click_id_text_is_a_uuid_or_refused(text: str) -> None:
    click = Click(
        text, 0, 1, "c", 1, None, None, None, None, "s", True, None, None, None, None, "GET", 0
    )
    try:
        row = to_row(click)
    except EventError:
        return
    assert row[0] == uuid.UUID(text)


@given(raw=st.binary(max_size=80))
def test_any_stream_payload_decodes_or_is_refused(raw: bytes) -> None:
    try:
        click = decode(raw)
    except EventError:
        return
    assert decode(encode(click)) == click


@pytest.mark.parametrize("count", [1000])
def test_click_ids_are_unique_time_ordered_uuid7_and_round_trip(count: int) -> None:
    ids = [str(uuid_utils.uuid7()) for _ in range(count)]
    assert len(set(ids)) == count
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 for u in parsed)
    assert [str(u) for u in parsed] == ids
    stamps = [u.int >> 80 for u in parsed]  # the first 48 bits: milliseconds
    assert stamps == sorted(stamps)
