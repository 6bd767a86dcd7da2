"""Destination normalisation (app/links/urls.py) and near-miss codes, as properties: what any
input becomes, not only the cases we thought of."""

from __future__ import annotations

import ipaddress
import string
import unicodedata
from urllib.parse import unquote, urlsplit

import idna
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.edge.linkcache import RedirectTarget
from app.links.mirror import EdgeLink
from app.links.model import code_in_path, host_allowed, is_valid_code
from app.links.urls import MAX_DESTINATION_BYTES, normalise_destination, normalise_host, param_name
from app.settings import Settings

# What RFC 3986 lets a URI hold, escapes included.
URI_CHARACTERS = set(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")

# Labels in many scripts, as publishers write them (letters, digits, inner hyphens).
letter = st.characters(categories=["Ll", "Lu", "Lo", "Nd"], max_codepoint=0x9FFF)
label = st.text(letter, min_size=1, max_size=12)
unicode_host = st.lists(label, min_size=1, max_size=3).map(lambda ls: ".".join([*ls, "example"]))
# Anything but controls, whitespace, backslash and surrogates, in path, query and fragment.
url_text = st.text(
    st.characters(exclude_categories=["Cc", "Cs", "Zs", "Zl", "Zp"], exclude_characters="\\"),
    max_size=60,
)


def normal_host_or_none(host: str) -> str | None:
    try:
        return normalise_host(host)
    except ValueError:
        return None


@st.composite
def destinations(draw: st.DrawFn) -> str:
    host = draw(unicode_host)
    assume(normal_host_or_none(host) is not None)
    path, query, fragment = draw(url_text), draw(url_text), draw(url_text)
    url = f"https://{host}/{path.replace('?', '').replace('#', '')}"
    if draw(st.booleans()):
        url += "?" + query.replace("#", "")
    if draw(st.booleans()):
        url += "#" + fragment
    return url


@given(destinations())
def test_normal_form_is_ascii_bounded_idempotent_and_means_the_same(url: str) -> None:
    try:
        normal = normalise_destination(url)
    except ValueError as exc:
        assert "longer than" in str(exc)
        return
    assert normal.url.isascii() and set(normal.url) <= URI_CHARACTERS
    assert len(normal.url.encode()) <= MAX_DESTINATION_BYTES
    assert normalise_destination(normal.url) == normal
    written, sent = urlsplit(url), urlsplit(normal.url)
    # What a server decodes is what the publisher wrote.
    assert unquote(sent.path) == unquote(written.path)
    assert unquote(sent.query) == unquote(written.query)
    assert unquote(sent.fragment) == unquote(written.fragment)
    assert sent.hostname == normal.host == idna.encode(written.hostname or "", uts46=True).decode()


@given(unicode_host)
def test_a_host_and_its_punycode_are_one_host_for_the_allow_list(host: str) -> None:
    ascii_host = normal_host_or_none(host)
    assume(ascii_host is not None)
    for pattern_as_written in (host, ascii_host, f"*.{host.partition('.')[2]}"):
        patterns = Settings(allowed_hosts=pattern_as_written).allowed_hosts
        assert host_allowed(normalise_host(host), patterns)
        assert host_allowed(normalise_host(ascii_host or ""), patterns)


@given(st.text(max_size=30))
def test_any_host_is_refused_or_comes_out_resolvable(host: str) -> None:
    normal = normal_host_or_none(host)
    if normal is None:
        return
    assert normal.isascii() and normalise_host(normal) == normal
    try:
        ipaddress.ip_address(normal)
    except ValueError:
        labels = normal.split(".")
        assert all(0 < len(x) <= 63 and not x.startswith("-") for x in labels)
        assert all(set(x) <= set(string.ascii_lowercase + string.digits + "-") for x in labels)
        assert not labels[-1].isdigit()


@pytest.mark.parametrize(
    "host",
    ["a%2Fb.example", "a%2fb.example", "a%00.example", "a%20b.example", "a%ZZ.example", "%FF.x"],
)
def test_escapes_in_a_host_decode_to_what_a_host_cannot_hold(host: str) -> None:
    assert normal_host_or_none(host) is None


@given(st.text(string.ascii_letters + string.digits + "%_-.~[]", min_size=1, max_size=20))
def test_parameter_names_compare_as_a_server_decodes_them(name: str) -> None:
    encoded = "".join(f"%{b:02X}" for b in name.encode())
    assert param_name(encoded) == param_name(name.replace("%", "%25")) == name
    plus = name.replace("%", "%25").replace("_", "+")
    assert param_name(plus) == name.replace("_", " ")  # "+" is a space


@given(
    name=st.sampled_from(["aff_click_id", "aff%5Fclick%5Fid", "%61ff_click_id", "aff_click%5fid"]),
    before=st.lists(st.sampled_from(["a=1", "b=", "c", "aff_click=1"]), max_size=3),
)
def test_the_click_id_parameter_is_replaced_whatever_its_spelling(
    name: str, before: list[str]
) -> None:
    destination = "https://shop.example.com/?" + "&".join([*before, f"{name}=old"])
    target = RedirectTarget(EdgeLink(1, "c", 1, destination, True, None), "aff_click_id")
    query = target.location("ID").partition("?")[2]
    assert query.split("&") == [*before, "aff_click_id=ID"]


def punctuation_symbol_or_space(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "PS" or category == "Zs"


tail = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8)


@given(code=st.text(string.ascii_letters + string.digits, min_size=1, max_size=32), tail=tail)
def test_a_code_with_a_tail_no_code_can_hold_names_that_code(code: str, tail: str) -> None:
    path = code + tail
    named = code_in_path(path)
    if all(punctuation_symbol_or_space(c) for c in tail):
        assert named == code
    if named is not None:  # a code, then nothing that could be part of one, nothing invisible
        assert is_valid_code(named) and path.startswith(named)
        assert all(punctuation_symbol_or_space(c) for c in path[len(named) :])


@pytest.mark.parametrize("tail", ["/", ".", ",", ")", "!", ";", "//", ").", "…", "。", '"', ">"])
def test_the_near_misses_of_pasted_links_name_the_code(tail: str) -> None:
    assert code_in_path("abcD12345" + tail) == "abcD12345"


@pytest.mark.parametrize(
    "path",
    ["abcD12345/x", "abcD12345.html", "abcD12345é", ".abc", "", "/", "abc\r\n", "abc\u200b"],
)
def test_other_paths_name_nothing(path: str) -> None:
    assert code_in_path(path) is None
