"""The tracking-URL builder and its QR codes (app/links/builder.py): what it writes, the
redirect reads back exactly; what the redirect would drop, it refuses."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.edge.params import MAX_VALUE_LENGTH, parse_tracking
from app.errors import InvalidInput
from app.links.builder import MAX_QR_SCALE, qr_png, qr_svg, tracking_url

SHORT = "https://s.example.com/e/abcD12345"

# Values the redirect keeps: no control nor invisible characters (app/core/chars.py), no lone
# surrogates, 0-128 characters (empty means "absent").
clean_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cc", "Cf", "Zl", "Zp", "Cs"),
        blacklist_characters="\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0",
    ),
    max_size=MAX_VALUE_LENGTH,
)
maybe = st.none() | clean_text


@given(af=maybe, cn=maybe, cv=maybe, dp=maybe)
def test_the_redirect_reads_back_what_the_builder_writes(
    af: str | None, cn: str | None, cv: str | None, dp: str | None
) -> None:
    url = tracking_url(SHORT, af=af, cn=cn, cv=cv, dp=dp)
    parts = urlsplit(url)
    assert url.startswith(SHORT)
    assert url.isascii()
    parsed = parse_tracking(parts.query.encode("ascii"))
    assert (parsed.af, parsed.cn, parsed.cv, parsed.dp) == (
        af or None,
        cn or None,
        cv or None,
        dp or None,
    )
    assert not parsed.invalid


def test_order_encoding_and_empty_values() -> None:
    assert tracking_url(SHORT) == SHORT
    assert tracking_url(SHORT, dp="x y", af="001", cn="") == f"{SHORT}?af=001&dp=x%20y"
    assert tracking_url(SHORT, cv="a&b=c+d#e/%") == f"{SHORT}?cv=a%26b%3Dc%2Bd%23e%2F%25"
    assert tracking_url(SHORT, af="ü") == f"{SHORT}?af=%C3%BC"
    assert tracking_url(f"{SHORT}?x=1", af="1") == f"{SHORT}?x=1&af=1"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("af", "x" * (MAX_VALUE_LENGTH + 1), "longer than 128"),
        ("cn", "a\x00b", "control or invisible"),
        ("cv", "a\u200bb", "control or invisible"),
        ("dp", "a\u202eb", "control or invisible"),
        ("af", "\ud800", "lone surrogate"),
    ],
)
def test_values_the_redirect_would_drop_are_refused(field: str, value: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        tracking_url(SHORT, **{field: value})
    assert caught.value.field == field
    assert words in caught.value.message


def test_exactly_the_longest_value_is_accepted() -> None:
    assert tracking_url(SHORT, af="x" * MAX_VALUE_LENGTH).endswith("x" * MAX_VALUE_LENGTH)


def test_svg_is_an_xml_document() -> None:
    svg = qr_svg(tracking_url(SHORT, af="001"))
    root = ET.fromstring(svg.encode("utf-8"))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert float(root.attrib["width"]) > 0


def test_png_has_the_signature_and_scales() -> None:
    small = qr_png(SHORT, scale=1)
    large = qr_png(SHORT, scale=10)
    for png in (small, large):
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert png[12:16] == b"IHDR"
    width_small, height_small = struct.unpack(">II", small[16:24])
    width_large, _ = struct.unpack(">II", large[16:24])
    assert width_small == height_small
    # version 1-40 is 21-177 modules, plus a 4-module quiet zone on each side
    assert 29 <= width_small <= 185
    assert width_large == width_small * 10


@pytest.mark.parametrize("scale", [0, -1, MAX_QR_SCALE + 1])
def test_scale_is_bounded(scale: int) -> None:
    for draw in (qr_png, qr_svg):
        with pytest.raises(InvalidInput) as caught:
            draw(SHORT, scale=scale)
        assert caught.value.field == "size"


def test_a_text_too_long_for_a_qr_code_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        qr_png("x" * 3000)
    assert "too long" in caught.value.message
