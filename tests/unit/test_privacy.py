"""The client address: normalised and checked once, then masked as configured, and keyed for
the per-IP duplicate rule whatever the mode (app/edge/privacy.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.edge.privacy import (
    MAX_ADDRESS_TEXT,
    TRUNCATE_V4_PREFIX,
    TRUNCATE_V6_PREFIX,
    IpMasker,
    normalise_address,
)
from app.settings import IpMode

SECRET = b"test-ip-secret-test-ip-secret-test"
v4 = st.ip_addresses(v=4).map(ipaddress.IPv4Address)
v6 = st.ip_addresses(v=6).map(ipaddress.IPv6Address)
addresses = st.one_of(v4, v6)


def canonical(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """What ipaddress calls this address, an IPv4-mapped IPv6 one being its IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def mapped(address: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(0xFFFF_0000_0000 | int(address))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("203.0.113.77", "203.0.113.77"),
        ("  203.0.113.77\t", "203.0.113.77"),
        ("::ffff:203.0.113.77", "203.0.113.77"),
        ("::FFFF:CB00:714D", "203.0.113.77"),
        ("0:0:0:0:0:ffff:cb00:714d", "203.0.113.77"),
        ("[::ffff:203.0.113.77]", "203.0.113.77"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        (" [2001:db8::1] ", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%25]", "fe80::1"),
        ("::1", "::1"),
        ("::", "::"),
        ("::1.2.3.4", "::102:304"),  # IPv4-compatible (deprecated), not mapped: IPv6
        ("64:ff9b::203.0.113.77", "64:ff9b::cb00:714d"),  # NAT64: an IPv6 address too
    ],
)
def test_addresses_are_normalised(raw: str, expected: str) -> None:
    assert normalise_address(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        " ",
        "unix:/run/clicktrack.sock",
        "/run/clicktrack.sock",
        "localhost",
        "example.com",
        "203.0.113.77:8080",
        "[2001:db8::1]:443",
        "203.0.113.077",  # leading zeros: octal to some parsers
        "203.0.113",
        "203.0.113.256",
        "203.0.113.77%eth0",  # a zone id belongs to IPv6
        "[203.0.113.77]",
        "203.0.113.77, 198.51.100.1",  # a header's whole list
        "\uff12\uff10\uff13.0.113.77",  # full-width digits
        "2001:db8::1::2",
        "2001:db8::g",
        "1" * (MAX_ADDRESS_TEXT + 1),
        " " * MAX_ADDRESS_TEXT + "1.2.3.4",
        203_0113_77,
        b"203.0.113.77",
        ("203.0.113.77", 80),
    ],
)
def test_what_is_not_an_address_is_none(raw: object) -> None:
    assert normalise_address(raw) is None
    assert IpMasker(IpMode.full, SECRET)(raw) is None


@given(addresses)
def test_every_address_round_trips_to_its_canonical_form(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    expected = canonical(address)
    assert normalise_address(str(address)) == expected
    assert normalise_address(address.exploded) == expected
    assert normalise_address(address.exploded.upper()) == expected
    if address.version == 6:
        assert normalise_address(f"[{address}]") == expected
        assert normalise_address(f" {address}%en0 ") == expected


@given(v4)
def test_an_ipv4_mapped_address_is_its_ipv4(address: ipaddress.IPv4Address) -> None:
    as_v6 = mapped(address)
    for written in (f"::ffff:{address}", str(as_v6), as_v6.exploded, f"[::FFFF:{address}]"):
        assert normalise_address(written) == str(address)


@given(st.text(max_size=80) | st.from_regex(r"\A\s*\[?[0-9a-fA-F:.%\[\]]{0,50}\]?\s*\Z"))
def test_any_text_is_an_address_or_none_and_normalising_is_idempotent(raw: str) -> None:
    normal = normalise_address(raw)
    if normal is not None:
        assert str(ipaddress.ip_address(normal)) == normal
        assert normalise_address(normal) == normal


def reference(raw: str) -> str | None:
    """The rule as ipaddress reads it (what the C library's parser must agree with)."""
    if len(raw) > MAX_ADDRESS_TEXT or not raw.isascii():
        return None
    text = raw.strip()
    if ":" in text:
        if text[:1] == "[" and text[-1:] == "]":
            text = text[1:-1]
        text = text.partition("%")[0]
    try:
        return canonical(ipaddress.ip_address(text))
    except ValueError:
        return None


hextets = st.text(alphabet="0123456789abcdefABCDEF", max_size=5)
octets = st.sampled_from(["0", "00", "01", "1", "9", "10", "99", "255", "256", "300", ""])
embedded_v4 = st.lists(octets, min_size=3, max_size=5).map(".".join)
near_v6 = st.builds(
    lambda groups, at, gap, tail: ":".join(groups[:at]) + gap + ":".join(groups[at:]) + tail,
    st.lists(hextets, max_size=9),
    st.integers(0, 9),
    st.sampled_from([":", "::", ":::", ""]),
    st.sampled_from(["", ":"]) | embedded_v4.map(lambda v4: ":" + v4),
)


@given(near_v6 | embedded_v4 | st.from_regex(r"\A[0-9a-fA-F:.]{0,46}\Z"))
def test_the_parser_agrees_with_ipaddress(raw: str) -> None:
    assert normalise_address(raw) == reference(raw)


@given(addresses)
def test_truncate_keeps_the_network_that_holds_the_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    kept = IpMasker(IpMode.truncate, SECRET)(str(address))
    assert kept is not None
    full = ipaddress.ip_address(canonical(address))
    prefix = TRUNCATE_V4_PREFIX if full.version == 4 else TRUNCATE_V6_PREFIX
    network = ipaddress.ip_network(f"{kept}/{prefix}")  # strict: kept is the network's own
    assert full in network
    assert str(network.network_address) == kept


@given(v4)
def test_a_mapped_address_is_kept_and_keyed_as_its_ipv4(address: ipaddress.IPv4Address) -> None:
    written = f"::ffff:{address}"
    for mode in IpMode:
        masker = IpMasker(mode, SECRET)
        assert masker(written) == masker(str(address))
    masker = IpMasker(IpMode.full, SECRET)
    assert masker.window_key(normalise_address(written) or "") == masker.window_key(str(address))


def test_full_and_truncate_keep_what_they_say() -> None:
    full = IpMasker(IpMode.full, SECRET)
    truncate = IpMasker(IpMode.truncate, SECRET)
    assert full("::ffff:203.0.113.77") == "203.0.113.77"
    assert truncate("::ffff:203.0.113.77") == "203.0.113.0"
    assert truncate("2001:db8:abcd:12::1") == "2001:db8:abcd::"


def test_hash_mode_is_keyed() -> None:
    one = IpMasker(IpMode.hash, SECRET)("203.0.113.77")
    assert one is not None and len(one) == 32 and "203" not in one
    assert IpMasker(IpMode.hash, SECRET + b"x")("203.0.113.77") != one


@given(st.lists(addresses, min_size=2, max_size=2, unique_by=canonical))
def test_window_keys_are_one_per_full_address_whatever_the_mode(
    pair: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> None:
    first, second = (canonical(address) for address in pair)
    keys = {mode: IpMasker(mode, SECRET) for mode in IpMode}
    first_keys = {masker.window_key(first) for masker in keys.values()}
    assert len(first_keys) == 1  # the mode changes what is stored, not what is judged
    [key] = first_keys
    assert len(key) == 32 and int(key, 16) >= 0
    assert keys[IpMode.truncate].window_key(second) != key  # even in the same network
    assert IpMasker(IpMode.full, SECRET + b"x").window_key(first) != key
    assert key != keys[IpMode.hash].mask(first)  # not the stored hash either


def test_addresses_of_one_network_get_different_window_keys() -> None:
    masker = IpMasker(IpMode.truncate, SECRET)
    v4_addresses = [f"203.0.113.{n}" for n in range(1, 26)]
    v6_addresses = [f"2001:db8:abcd:{n:x}::{n}" for n in range(1, 26)]
    for group in (v4_addresses, v6_addresses):
        assert len({masker(address) for address in group}) == 1
        assert len({masker.window_key(address) for address in group}) == 25


def test_a_long_secret_is_a_key_too() -> None:
    """BLAKE2b keys stop at 64 bytes: the window key is derived, any secret works."""
    masker = IpMasker(IpMode.full, b"s" * 200)
    assert len(masker.window_key("203.0.113.77")) == 32
