"""Referer -> host (app/dimensions/referrer.py) and Accept-Language -> first language
(app/dimensions/language.py): examples and properties on any text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.dimensions.language import MAX_ITEMS, first_language
from app.dimensions.referrer import referrer_host


@pytest.mark.parametrize(
    ("referer", "expected"),
    [
        ("https://www.google.com/", "www.google.com"),
        ("https://WWW.Google.COM/search?q=shoes#top", "www.google.com"),
        ("http://news.example.com:8080/a/b", "news.example.com"),
        ("https://user:secret@blog.example.org/post", "blog.example.org"),
        ("https://example.com./", "example.com"),  # trailing dot: the same host
        ("https://bücher.example/", "xn--bcher-kva.example"),  # IDNA, as hosts.py stores
        ("https://xn--bcher-kva.example/", "xn--bcher-kva.example"),
        ("https://[2001:DB8::1]:443/", "2001:db8::1"),
        ("http://203.0.113.9/", "203.0.113.9"),
        ("  https://t.co/abc  ", "t.co"),
        ("HTTPS://Example.com", "example.com"),
        ("", None),
        ("   ", None),
        ("google.com", None),  # no scheme: not a URL a browser sends
        ("/relative/path", None),
        ("android-app://com.google.android.gm/", None),
        ("about:blank", None),
        ("data:text/html,hi", None),
        ("ftp://files.example.com/", None),
        ("https:///path-only", None),
        ("https://[not-ipv6]/", None),
        ("https://[2001:db8::1/", None),
        ("https://exa mple.com/", None),
        ("https://exa_mple.com/", None),
        ("https://" + "a" * 300 + ".com/", None),
        ("https://1.2.3.256/", None),
    ],
)
def test_referrer_host(referer: str, expected: str | None) -> None:
    assert referrer_host(referer) == expected


@given(st.text(max_size=300))
def test_referrer_never_raises_on_any_text(text: str) -> None:
    host = referrer_host(text)
    assert host is None or (host.isascii() and host == host.lower() and host)


@given(st.text(max_size=200))
def test_referrer_never_raises_on_any_url_like_text(rest: str) -> None:
    referrer_host("https://" + rest)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("en-US,en;q=0.9", "en"),
        ("pt-BR,pt;q=0.9,en-US;q=0.8,en;q=0.7", "pt"),
        ("de", "de"),
        ("FR-ca", "fr"),
        ("zh-Hant-TW,zh;q=0.9", "zh"),
        ("es-419", "es"),
        ("fil-PH", "fil"),  # three-letter primary subtag
        ("en;q=0.5, ja;q=0.8", "ja"),  # by weight, not by order
        ("en;q=0.8, fr;q=0.8", "en"),  # equal weights: the earlier one
        ("en;Q=0.3,nl;q=1", "nl"),
        ("en; q = 0.2 , it", "it"),
        ("en;q=0.000,de;q=0.001", "de"),
        ("en;q=0,*;q=0.1", None),  # q=0: not acceptable; "*" names no language
        ("*", None),
        ("*, fr;q=0.5", "fr"),
        ("en;q=1.5, de;q=0.2", "de"),  # a weight over 1 is malformed
        ("en;q=0.1234, de;q=0.2", "de"),  # more than three decimals is malformed
        ("en;q=abc", None),
        ("en;level=1", "en"),  # an unknown parameter is ignored
        ("i-klingon", None),  # grandfathered
        ("x-private", None),
        ("toolongtag", None),
        ("e", None),
        ("en_US", None),
        ("", None),
        (" , ,", None),
        ("123", None),
        ("ελ", None),
    ],
)
def test_first_language(header: str, expected: str | None) -> None:
    assert first_language(header) == expected


def test_only_the_first_items_are_read() -> None:
    header = ",".join(["*"] * MAX_ITEMS + ["en"])
    assert first_language(header) is None
    assert first_language(",".join(["*"] * (MAX_ITEMS - 1) + ["en"])) == "en"


@given(st.text(max_size=300))
def test_language_is_a_lower_case_primary_subtag_or_none(text: str) -> None:
    language = first_language(text)
    assert language is None or re.fullmatch(r"[a-z]{2,3}", language)


tags = st.from_regex(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,2}", fullmatch=True)
weights = st.sampled_from(["", ";q=1", ";q=0.9", ";q=0.5", ";q=0.001"])


@given(st.lists(st.tuples(tags, weights), min_size=1, max_size=8))
def test_language_is_one_of_the_header_primary_subtags(items: list[tuple[str, str]]) -> None:
    header = ", ".join(tag + weight for tag, weight in items)
    assert first_language(header) in {tag.split("-")[0].lower() for tag, _ in items}
