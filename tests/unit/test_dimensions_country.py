"""Client address -> country and ASN (app/dimensions/country.py): the embedded registry data,
an operator's MaxMind-format file (written here, tiny, with mmdb-writer) and a trusted
CDN's header."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mmdb_writer import MMDBWriter

# mmdb-writer takes netaddr's IPSet; netaddr ships no type information.
from netaddr import IPSet  # type: ignore[import-untyped]

from app.dimensions.country import (
    NOWHERE,
    GeoDatabaseError,
    MmdbDatabase,
    Place,
    country_code,
    country_from_header,
    embedded_country,
    global_address,
)
from app.settings import ConfigError

# Addresses whose registry country cannot drift: each is a registry's or a root server's own
# block, held by the same organisation since the block was first delegated, and the
# delegation files list the holder's country (not where users are).
STABLE = {
    # RIPE NCC's own network (www.ripe.net), Amsterdam, since 1993.
    "193.0.6.139": "NL",
    # NIC.br (registro.br), the Brazilian registry, LACNIC's delegation.
    "200.160.2.3": "BR",
    # APNIC's own network, Brisbane.
    "202.12.29.1": "AU",
    # Google Public DNS, in 8.0.0.0/8: registered in the US (ARIN) since first delegated.
    "8.8.8.8": "US",
    # Andrews & Arnold, a UK ISP's block: the address MaxMind's own test databases use.
    "81.2.69.142": "GB",
    # RIPE NCC's IPv6 block (k.root-servers.net and ripe.net live in it).
    "2001:67c:2e8::1": "NL",
    # APNIC's IPv6 block for its own services.
    "2001:dc0:2001:11::194": "AU",
    # Google Public DNS over IPv6.
    "2001:4860:4860::8888": "US",
}


@pytest.mark.parametrize(("address", "country"), STABLE.items())
def test_the_embedded_data_knows_stable_allocations(address: str, country: str) -> None:
    found = global_address(address)
    assert found is not None
    assert embedded_country(found) == country


@pytest.mark.parametrize(
    "text",
    [
        "10.1.2.3",  # private
        "192.168.0.1",
        "172.16.5.4",
        "100.64.0.1",  # carrier-grade NAT
        "127.0.0.1",  # loopback
        "::1",
        "fe80::1",  # link-local
        "fd00::1",  # unique local
        "192.0.2.1",  # documentation
        "2001:db8::1",
        "224.0.0.1",  # multicast
        "0.0.0.0",
        "",
        "garbage",
        "1.2.3",
        "8.8.8.8.8",
        "2001:4860::8888::1",
        "8" * 200,
    ],
)
def test_no_global_address_no_lookup(text: str) -> None:
    assert global_address(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" 8.8.8.8 ", "8.8.8.8"),
        ("::ffff:8.8.8.8", "8.8.8.8"),  # a dual-stack socket's IPv4 client
        ("[2001:4860:4860::8888]", "2001:4860:4860::8888"),
        ("2001:4860:4860:0:0:0:0:8888", "2001:4860:4860::8888"),
    ],
)
def test_address_forms(text: str, expected: str) -> None:
    assert global_address(text) == ipaddress.ip_address(expected)


@given(st.text(max_size=80))
def test_global_address_never_raises(text: str) -> None:
    global_address(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("DE", "DE"),
        ("de", "DE"),
        (" gb ", "GB"),
        ("XX", None),  # Cloudflare: unknown
        ("T1", None),  # Cloudflare: Tor
        ("", None),
        ("DEU", None),
        ("D1", None),
        ("ÄB", None),
        (None, None),
    ],
)
def test_trusted_header_values(value: str | None, expected: str | None) -> None:
    assert country_from_header(value) == expected


def test_country_code_takes_only_text() -> None:
    assert country_code(42) is None
    assert country_code({"iso_code": "DE"}) is None


def write_mmdb(path: Path, records: dict[str, dict[str, object]], ip_version: int = 6) -> Path:
    """A MaxMind-format file of ``records`` (network -> record), as the reader sees them."""
    writer = MMDBWriter(
        ip_version=ip_version, database_type="Test-Country-ASN", ipv4_compatible=ip_version == 6
    )
    for network, record in records.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


def test_an_operator_database_gives_country_and_asn(tmp_path: Path) -> None:
    path = write_mmdb(
        tmp_path / "geo.mmdb",
        {
            "8.8.8.0/24": {
                "country": {"iso_code": "DE"},
                "autonomous_system_number": 64500,
                "autonomous_system_organization": "Example",
            },
            # City/Country files without a located country still name the registered one.
            "1.1.1.0/24": {"registered_country": {"iso_code": "au"}},
            "2001:4860::/32": {"autonomous_system_number": 15169},
            "9.9.9.0/24": {"country": {"iso_code": "XX"}, "autonomous_system_number": True},
        },
    )
    database = MmdbDatabase(path)
    try:
        assert database.database_type == "Test-Country-ASN"

        def look(text: str) -> Place:
            address = global_address(text)
            assert address is not None
            return database.lookup(address)

        assert look("8.8.8.8") == Place("DE", 64500)
        assert look("1.1.1.1") == Place("AU", None)
        assert look("2001:4860:4860::8888") == Place(None, 15169)
        assert look("9.9.9.9") == NOWHERE
        assert look("193.0.6.139") == NOWHERE  # no record
    finally:
        database.close()


def test_an_ipv4_only_database_answers_nothing_for_ipv6(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "v4.mmdb", {"8.8.8.0/24": {"country": {"iso_code": "DE"}}}, 4)
    database = MmdbDatabase(path)
    try:
        address = global_address("2001:4860:4860::8888")
        assert address is not None
        assert database.lookup(address) == NOWHERE
    finally:
        database.close()


def test_a_missing_file_stops_startup_with_its_name(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.mmdb"
    with pytest.raises(GeoDatabaseError, match=r"nowhere\.mmdb") as raised:
        MmdbDatabase(missing)
    assert isinstance(raised.value, ConfigError)  # the CLI prints it and exits 1


@pytest.mark.parametrize("content", [b"", b"not a maxmind database" * 100])
def test_a_file_that_is_no_database_stops_startup(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.mmdb"
    path.write_bytes(content)
    with pytest.raises(GeoDatabaseError, match=r"broken\.mmdb"):
        MmdbDatabase(path)


def test_a_directory_stops_startup(tmp_path: Path) -> None:
    with pytest.raises(GeoDatabaseError):
        MmdbDatabase(tmp_path)
