"""Tracking-string parsing: properties over arbitrary input."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.chars import REFUSED_CLASS, is_refused
from app.edge.params import MAX_VALUE_LENGTH, TrackingStrings, parse_tracking

CONTROL = re.compile(f"[{REFUSED_CLASS}]")

# Text a publisher may legitimately put in a tracking string: no control nor invisible
# characters (categories Cc, Cf, Zl, Zp and the invisible letters of app/core/chars.py).
clean_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cc", "Cf", "Zl", "Zp", "Cs"),
        blacklist_characters="\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0",
    ),
    min_size=1,
    max_size=128,
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
            assert not any(is_refused(c) for c in value)


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
    """The plain reading: split on "&", then "=", decode, first non-empty value wins."""
    found: dict[bytes, str | None] = {}
    for pair in query.split(b"&"):
        raw_name, _, raw_value = pair.partition(b"=")
        name = unquote_to_bytes(raw_name.replace(b"+", b" "))
        if name in (b"af", b"cn", b"cv", b"dp") and found.get(name, "") == "":
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


# -- invisible characters: a kind, refused like control characters -------------------------

SPOOFERS = [
    "\u202e",  # right-to-left override: "af=abc\u202e321" shows as "abc123"
    "\u202a",  # left-to-right embedding
    "\u2066",  # left-to-right isolate
    "\u2069",  # pop directional isolate
    "\u200e",  # left-to-right mark
    "\u200f",  # right-to-left mark
    "\u061c",  # Arabic letter mark
    "\u200b",  # zero-width space: "12\u200b3" shows as "123"
    "\u200c",  # zero-width non-joiner
    "\u200d",  # zero-width joiner
    "\u2060",  # word joiner
    "\ufeff",  # byte order mark / zero-width no-break space
    "\u00ad",  # soft hyphen
    "\u180e",  # Mongolian vowel separator
    "\u2028",  # line separator (Zl)
    "\u2029",  # paragraph separator (Zp)
    "\U000e0041",  # tag Latin capital A
    "\u3164",  # Hangul filler: a letter that draws nothing
    "\u034f",  # combining grapheme joiner
]


@given(junk=st.sampled_from(SPOOFERS), value=clean_text)
def test_invisible_characters_anywhere_drop_the_value(junk: str, value: str) -> None:
    for raw in (junk + value, value + junk, value[:1] + junk + value[1:]):
        for encoded in (quote(raw).encode(), raw.encode("utf-8")):
            if b"&" in encoded or b"#" in encoded:
                continue
            parsed = parse_tracking(b"af=1&dp=" + encoded + b"&cv=3")
            assert (parsed.af, parsed.dp, parsed.cv, parsed.invalid) == ("1", None, "3", True)


@given(char=st.characters(categories=("Cf", "Cc", "Zl", "Zp")))
def test_every_format_control_and_separator_character_is_refused(char: str) -> None:
    parsed = parse_tracking(b"cn=x" + quote(char).encode())
    assert parsed.cn is None and parsed.invalid


def test_the_character_class_is_the_rule() -> None:
    """REFUSED_CLASS (built from planes 0, 1 and 14) refuses exactly what is_refused does."""
    refused = re.compile(f"[{REFUSED_CLASS}]")
    wrong = [
        hex(cp)
        for cp in range(0x110000)
        if not 0xD800 <= cp <= 0xDFFF and bool(refused.match(chr(cp))) != is_refused(chr(cp))
    ]
    assert wrong == []


@pytest.mark.parametrize(
    "value",
    ["caf\u00e9", "\u65e5\u672c", "a\u00a0b", "\u3000x", "\U0001f600", "\u2764\ufe0f", "\ue000"],
)
def test_visible_text_is_kept(value: str) -> None:
    """Letters, spaces (Zs), emoji with their variation selector, private use (Co)."""
    assert parse_tracking(b"cn=" + quote(value).encode()).cn == value


# -- repeated parameters: the first non-empty value wins -------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"af=&af=123", "123"),
        (b"af&af=123", "123"),
        (b"af=&af=&af=123&af=456", "123"),
        (b"af=%20&af=123", " "),  # a space is not empty
        (b"af=&cn=1&af=123", "123"),
        (b"af=&af=12%33", "123"),
        (b"af=", None),
        (b"af=&af=", None),
        (b"af", None),
    ],
)
def test_an_empty_value_does_not_hide_a_later_one(query: bytes, expected: str | None) -> None:
    parsed = parse_tracking(query)
    assert parsed.af == expected and not parsed.invalid


def test_an_invalid_first_value_wins_and_is_dropped() -> None:
    """Non-empty, so it wins: a later value cannot launder a bad one."""
    parsed = parse_tracking(b"af=%FF&af=123")
    assert parsed.af is None and parsed.invalid


@given(
    empties=st.lists(st.sampled_from(["af=", "af"]), max_size=3),
    first=clean_text,
    second=clean_text,
)
def test_first_non_empty_value_wins(empties: list[str], first: str, second: str) -> None:
    query = "&".join([*empties, f"af={quote(first)}", "af=", f"af={quote(second)}"])
    parsed = parse_tracking(query.encode())
    assert parsed.af == first and not parsed.invalid
