"""The entry point (app/dimensions/resolve.py): request facts -> Dimensions, sources of the
country in order, caches per distinct value."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.dimensions.country import (
    GeoDatabaseError,
    embedded_country,
    global_address,
    registry_country,
)
from app.dimensions.resolve import Dimensions, Resolver
from tests.unit.test_dimensions_country import write_mmdb

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)


@pytest.fixture(scope="module")
def resolver() -> Resolver:
    return Resolver()


def test_a_click_from_a_phone(resolver: Resolver) -> None:
    assert resolver.resolve(
        IPHONE, "193.0.6.139", "https://www.Google.com/search?q=x", "pt-BR,pt;q=0.9,en;q=0.8"
    ) == Dimensions(
        country="NL",
        asn=None,
        device="mobile",
        browser="Mobile Safari",
        browser_major=18,
        os="iOS",
        os_major=18,
        referrer_host="www.google.com",
        language="pt",
    )


def test_nothing_known_is_all_unknown(resolver: Resolver) -> None:
    assert resolver.resolve(None, None, None, None, None) == Dimensions()
    assert resolver.resolve("", "", "", "", "") == Dimensions()


def test_a_country_header_is_ignored_unless_its_name_is_configured(resolver: Resolver) -> None:
    """A client can send any header: only an operator-named one, set by its CDN, counts."""
    assert resolver.resolve(None, "193.0.6.139", None, None, "DE").country == "NL"
    trusting = Resolver(country_header=" CF-IPCountry ")
    assert trusting.country_header == "cf-ipcountry"
    assert trusting.resolve(None, "193.0.6.139", None, None, "de").country == "DE"
    assert trusting.resolve(None, "10.0.0.1", None, None, "DE").country == "DE"
    # "unknown" from the CDN: the address decides.
    assert trusting.resolve(None, "193.0.6.139", None, None, "XX").country == "NL"


def test_the_operator_database_comes_before_the_embedded_data(tmp_path: Path) -> None:
    path = write_mmdb(
        tmp_path / "geo.mmdb",
        {
            "193.0.0.0/21": {"country": {"iso_code": "SE"}, "autonomous_system_number": 3333},
            "8.8.8.0/24": {"autonomous_system_number": 15169},
        },
    )
    resolver = Resolver(mmdb_path=path)
    try:
        ripe = resolver.resolve(None, "193.0.6.139", None, None)
        assert (ripe.country, ripe.asn) == ("SE", 3333)
        # The file knows the ASN only: the country comes from the embedded data.
        google = resolver.resolve(None, "8.8.8.8", None, None)
        assert (google.country, google.asn) == ("US", 15169)
        # Not in the file at all.
        apnic = resolver.resolve(None, "202.12.29.1", None, None)
        assert (apnic.country, apnic.asn) == ("AU", None)
        assert resolver.resolve(None, "10.0.0.1", None, None).country is None
    finally:
        resolver.close()


def test_a_missing_database_fails_when_the_resolver_is_built(tmp_path: Path) -> None:
    with pytest.raises(GeoDatabaseError, match=r"absent\.mmdb"):
        Resolver(mmdb_path=tmp_path / "absent.mmdb")


def test_each_job_is_cached_per_distinct_value() -> None:
    resolver = Resolver()
    for _ in range(3):
        resolver.resolve(IPHONE, "8.8.8.8", "https://t.co/x", "en")
    resolver.resolve(IPHONE, "1.1.1.1", "https://t.co/y", "en")
    caches = resolver._agent, resolver._place, resolver._referrer, resolver._language
    # lru_cache's wrapper: (hits, misses, maxsize, currsize)
    stats = [cache.cache_info() for cache in caches]
    # Addresses skip the cache without an operator's database: the registry lookup is cheaper.
    assert [(s.hits, s.misses) for s in stats] == [(3, 1), (0, 0), (2, 2), (3, 1)]
    assert all(s.maxsize for s in stats)  # bounded
    # Only a form the registry data cannot read as given is parsed, and cached.
    for _ in range(2):
        assert resolver.resolve(None, "::ffff:8.8.8.8", None, None).country == "US"
    assert (resolver._place.cache_info().hits, resolver._place.cache_info().misses) == (1, 1)


@given(st.ip_addresses())
def test_the_registry_shortcut_agrees_with_parsing(address: IPv4Address | IPv6Address) -> None:
    """Without a database, an address is looked up as given; the answer is the one parsing
    it first gives, for every address and the forms older rows may hold."""
    resolver = Resolver()
    parsed = global_address(str(address))
    # Special-purpose blocks a registry did delegate (AS112's 2001:4:112::/48, which Python
    # calls not global) keep the registry's country on the shortcut: real, routed addresses.
    assume(parsed is not None or registry_country(str(address)) is None)
    expected = None if parsed is None else embedded_country(parsed)
    forms = [str(address), f" {address} "]
    if isinstance(address, IPv6Address):
        forms.append(f"[{address}]")
    else:
        forms.append(f"::ffff:{address}")
    for form in forms:
        assert resolver.resolve(None, form, None, None).country == expected, form


@given(
    st.one_of(st.none(), st.text(max_size=200)),
    st.one_of(st.none(), st.text(max_size=60), st.ip_addresses().map(str)),
    st.one_of(st.none(), st.text(max_size=200)),
    st.one_of(st.none(), st.text(max_size=100)),
    st.one_of(st.none(), st.text(max_size=5)),
)
def test_never_raises_on_any_text(
    ua: str | None,
    ip: str | None,
    referer: str | None,
    accept_language: str | None,
    country_header: str | None,
) -> None:
    dimensions = Resolver(country_header="CF-IPCountry").resolve(
        ua, ip, referer, accept_language, country_header
    )
    assert dimensions.country is None or (
        len(dimensions.country) == 2 and dimensions.country.isupper()
    )
