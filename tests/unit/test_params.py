"""Tracking-string parsing: properties over arbitrary input."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes, urlencode

from hypothesis import given
from hypothesis import strategies as st

from app.edge.params import MAX_VALUE_LENGTH, TrackingStrings, parse_tracking

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# Text a publisher may legitimately put in a tracking string: no control characters.
clean_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=128
)


@given(af=clean_text, cn=clean_text, cv=clean_text, dp=clean_text)
def test_valid_values_round_trip_through_url_encoding(af: str, cn: str, cv: str, dp: str) -> None:
    query = urlencode({"af": af, "cn": cn, "cv": cv, "dp": dp}).encode()
    assert parse_tracking(query) == parse_tracking(query)
    parsed = parse_tracking(query)
    assert (parsed.af, parsed.cn, parsed.cv, parsed.dp) == (af, cn, cv, dp)
    assert not parsed.invalid


@given(value=st.text(min_size=MAX_VALUE_LENGTH + 1, max_size=300))
def test_overlong_values_are_dropped_and_flagged(value: str) -> None:
    parsed = parse_tracking(b"af=" + quote(value).encode())
    assert parsed.af is None and parsed.invalid


@given(first=clean_text, second=clean_text)
def test_first_value_wins(first: str, second: str) -> None:
    parsed = parse_tracking(f"dp={quote(first)}&dp={quote(second)}".encode())
    assert parsed.dp == first


@given(raw=st.binary(max_size=400))
def test_any_bytes_parse_without_error_and_values_are_clean(raw: bytes) -> None:
    parsed = parse_tracking(raw)
    for value in (parsed.af, parsed.cn, parsed.cv, parsed.dp):
        if value is not None:
            assert 0 < len(value) <= MAX_VALUE_LENGTH
            assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)


def test_a_bad_value_does_not_spoil_the_others() -> None:
    parsed = parse_tracking(b"af=%FF&cn=2&cv=" + b"x" * 200 + b"&dp=4")
    assert (parsed.af, parsed.cn, parsed.cv, parsed.dp, parsed.invalid) == (
        None,
        "2",
        None,
        "4",
        True,
    )


@given(value=clean_text)
def test_a_double_encoded_value_is_decoded_once(value: str) -> None:
    once = quote(value, safe="")
    parsed = parse_tracking(b"cv=" + quote(once, safe="").encode())
    if len(once) <= MAX_VALUE_LENGTH:
        assert parsed.cv == once and not parsed.invalid
    else:
        assert parsed.cv is None and parsed.invalid


@given(first=clean_text, rest=st.binary(max_size=300))
def test_nothing_after_a_value_changes_it(first: str, rest: bytes) -> None:
    parsed = parse_tracking(b"af=" + quote(first).encode() + b"&" + rest)
    assert parsed.af == first


@given(junk=st.sampled_from(["\r", "\n", "\x00", "\x7f", "\x85", "\u0080"]), value=clean_text)
def test_control_characters_anywhere_drop_the_value(junk: str, value: str) -> None:
    for raw in (junk + value, value + junk, value[:1] + junk + value[1:]):
        as_sent = [quote(raw).encode()]
        if value.isalnum():  # unencoded, as a server might pass it on
            as_sent.append(raw.encode("utf-8"))
        for encoded in as_sent:
            parsed = parse_tracking(b"dp=" + encoded)
            assert parsed.dp is None and parsed.invalid


def _parse_by_splitting(query: bytes) -> TrackingStrings:
    """The plain reading: split on "&", then "=", decode, first value wins."""
    found: dict[bytes, str | None] = {}
    for pair in query.split(b"&"):
        raw_name, _, raw_value = pair.partition(b"=")
        name = unquote_to_bytes(raw_name.replace(b"+", b" "))
        if name in (b"af", b"cn", b"cv", b"dp") and name not in found:
            value = unquote_to_bytes(raw_value.replace(b"+", b" "))
            try:
                text: str | None = value.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is not None and (len(text) > MAX_VALUE_LENGTH or CONTROL.search(text)):
                text = None
            found[name] = text
    return TrackingStrings(
        found.get(b"af") or None,
        found.get(b"cn") or None,
        found.get(b"cv") or None,
        found.get(b"dp") or None,
        invalid=None in found.values(),
    )


@given(
    parts=st.lists(
        st.one_of(
            st.sampled_from(["af", "cn", "cv", "dp", "af=", "cn=1", "xaf=2", "afx=3", "=", ""]),
            st.text(alphabet="afcnvdp=&%+x12\u00e9\x01", max_size=10),
        ),
        max_size=8,
    )
)
def test_parsing_matches_the_plain_reading(parts: list[str]) -> None:
    query = "&".join(parts).encode()
    assert parse_tracking(query) == _parse_by_splitting(query)
