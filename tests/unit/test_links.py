"""Pure link rules: codes, allowed hosts with wildcards, destination validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.links.model import (
    LinkError,
    host_allowed,
    is_valid_code,
    random_code,
    validate_destination,
)

HOSTS = ("example.com", "*.shop.example.net")
label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)


def test_exact_and_wildcard_hosts() -> None:
    assert host_allowed("example.com", HOSTS)
    assert validate_destination("https://EXAMPLE.COM./", HOSTS) == "https://example.com/"
    assert not host_allowed("www.example.com", HOSTS)
    assert host_allowed("a.shop.example.net", HOSTS)
    assert host_allowed("a.b.shop.example.net", HOSTS)
    assert not host_allowed("shop.example.net", HOSTS)  # the wildcard needs a subdomain
    assert not host_allowed("evilshop.example.net", HOSTS)
    assert not host_allowed("shop.example.net.evil.org", HOSTS)


@given(sub=label, attacker=label)
def test_wildcard_never_matches_a_foreign_suffix(sub: str, attacker: str) -> None:
    assert host_allowed(f"{sub}.shop.example.net", HOSTS)
    assert not host_allowed(f"{sub}.shop.example.net.{attacker}.org", HOSTS)
    assert not host_allowed(f"{attacker}shop.example.net", HOSTS)


@given(path=st.text(alphabet="abcXYZ019/-_.~%?=&!$'()*+,;:@", max_size=200))
def test_destinations_already_in_normal_form_are_kept_verbatim(path: str) -> None:
    url = f"https://example.com/{path}"
    assert validate_destination(url, HOSTS) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.org/",
        "https://example.com@evil.org/",
        "https://evil.org\\@example.com/",
        "https://example.com\t.evil.org/",
        "data:text/html,hi",
        "https:///nohost",
        "https://[::1/",
    ],
)
def test_bad_destinations_are_refused(url: str) -> None:
    with pytest.raises(LinkError):
        validate_destination(url, HOSTS)


@given(st.text(max_size=40))
def test_code_validation_matches_the_documented_alphabet(code: str) -> None:
    expected = 1 <= len(code) <= 32 and all(c.isascii() and c.isalnum() for c in code)
    assert is_valid_code(code) == expected


def test_random_codes_are_valid_and_differ() -> None:
    codes = {random_code() for _ in range(1000)}
    assert len(codes) == 1000
    assert all(is_valid_code(c) for c in codes)
