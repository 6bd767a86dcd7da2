"""The link mirror record: what one release writes, this one reads, whatever else it carries;
and nothing in Redis can make the reader raise."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.links import mirror
from app.links.caps import ClickCap, caps_json
from app.links.mirror import EdgeLink
from app.links.model import Rule
from app.links.rules import KINDS, as_json

INT64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | INT64 | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
RULES = st.lists(
    st.builds(
        lambda when, values, destination, name: Rule(
            when, tuple(values), destination, name if when == "param" else None
        ),
        st.sampled_from(KINDS),
        st.lists(TEXT, min_size=1, max_size=3),
        TEXT,
        TEXT,
    ),
    max_size=3,
).map(tuple)
LINKS = st.builds(
    EdgeLink,
    id=st.integers(1, 2**63 - 1),
    code=st.from_regex(r"[A-Za-z0-9]{1,32}", fullmatch=True),
    publisher_id=st.integers(1, 2**63 - 1),
    destination=TEXT,
    active=st.booleans(),
    expires_at=st.none() | st.floats(0, 1e11, allow_nan=False),
    updated_us=st.integers(0, 2**62),
    rules=RULES,
)
CAPS = st.lists(
    st.builds(
        ClickCap,
        cap_id=st.integers(1, 2**62),
        cap=st.integers(0, 2**62),
        period=st.sampled_from(["day", "month", "calculation_period", "fortnight"]),
        campaign=st.none() | TEXT,
        fallback_url=st.none() | TEXT,
    ),
    max_size=3,
).map(tuple)
# Links with click caps (minor 1.2): known (a list, maybe empty after a disabled one) or not
# known to the writer (None, caps_us -1).
CAPPED = st.builds(
    lambda link, caps, caps_us: replace(link, caps=caps, caps_us=-1 if caps is None else caps_us),
    LINKS,
    st.none() | CAPS,
    st.integers(0, 2**62),
)


@given(LINKS | CAPPED)
def test_a_record_reads_back_as_written(link: EdgeLink) -> None:
    assert mirror.decode(link.code, mirror.encode(link)) == link


@given(LINKS)
def test_an_unversioned_record_reads_back_without_its_time(link: EdgeLink) -> None:
    """Without its rules, too: the unversioned record has no room for them (its readers
    unpack exactly five items)."""
    decoded = mirror.decode(link.code, mirror.encode(link, legacy=True))
    assert decoded == EdgeLink(
        link.id, link.code, link.publisher_id, link.destination, link.active, link.expires_at
    )


@given(LINKS | CAPPED, st.integers(1, 1000), st.lists(JSON, max_size=4))
def test_a_newer_minor_with_more_fields_reads_the_fields_we_know(
    link: EdgeLink, minor: int, extra: list[Any]
) -> None:
    """A newer minor appends after the caps (minor 2), which it always writes, if empty."""
    record = orjson.loads(mirror.encode(link))[:7]
    record[0][1] = mirror.MINOR + minor
    caps = None if link.caps is None else caps_json(link.caps)
    record += [as_json(link.rules), caps, link.caps_us]
    assert mirror.decode(link.code, orjson.dumps([*record, *extra])) == link


@given(LINKS.filter(lambda link: link.rules), st.lists(JSON, max_size=4))
def test_a_link_with_rules_and_no_caps_is_written_as_minor_1(
    link: EdgeLink, extra: list[Any]
) -> None:
    """Exactly the minor 1 record, and nothing after its rules is read as caps in it."""
    record = orjson.loads(mirror.encode(link))
    assert record[0] == [1, 1] and len(record) == 8
    assert mirror.decode(link.code, orjson.dumps([*record, *extra])) == link


def test_caps_are_a_minor_2_item_after_the_rules() -> None:
    caps = (ClickCap(4, 100, "day", None, "https://example.com/full"), ClickCap(5, 3, "month"))
    link = EdgeLink(7, "abc", 3, "https://example.com/", True, None, 99, (), caps, 1234)
    assert orjson.loads(mirror.encode(link)) == [
        [1, 2], 99, 7, 3, "https://example.com/", True, None, [],
        [[4, 100, "day", None, "https://example.com/full"], [5, 3, "month", None, None]], 1234,
    ]  # fmt: skip
    assert mirror.decode("abc", mirror.encode(link)) == link
    unknown = replace(link, caps=None, caps_us=-1)
    assert orjson.loads(mirror.encode(unknown))[-2:] == [None, -1]
    for bad in (
        [[4, "100", "day", None, None]],
        [[4, 1, "day"]],
        {"a": 1},
        [[4, -1, "day", None, None]],
    ):
        record = [[1, 2], 99, 7, 3, "https://example.com/", True, None, [], bad, 1]
        assert mirror.decode("abc", orjson.dumps(record)) is None


@given(LINKS.filter(lambda link: not link.rules), st.lists(JSON, max_size=4))
def test_a_link_without_rules_nor_caps_is_written_as_before_rules(
    link: EdgeLink, extra: list[Any]
) -> None:
    """Exactly the minor 0 record: a release before rules reads it as it always did, and
    nothing after its five fields is read as rules in a minor 0 record."""
    fields = [link.id, link.publisher_id, link.destination, link.active, link.expires_at]
    assert orjson.loads(mirror.encode(link)) == [[1, 0], link.updated_us, *fields]
    record = orjson.dumps([[1, 0], link.updated_us, *fields, *extra])
    assert mirror.decode(link.code, record) == link


def test_rules_are_a_minor_1_item_after_the_five_fields() -> None:
    rule = Rule("param", ("news",), "https://example.com/n", "utm_source")
    link = EdgeLink(7, "abc", 3, "https://example.com/", True, None, 99, (rule,))
    assert orjson.loads(mirror.encode(link)) == [
        [1, 1], 99, 7, 3, "https://example.com/", True, None,
        [{"when": "param", "name": "utm_source", "in": ["news"],
          "destination": "https://example.com/n"}],
    ]  # fmt: skip
    assert mirror.decode("abc", mirror.encode(link)) == link


@pytest.mark.parametrize(
    "rules",
    [{"when": "country"}, [{"when": 5, "in": [], "destination": "x"}], [["country"]],
     [{"when": "country", "in": [1], "destination": "x"}],
     [{"when": "param", "in": ["a"], "destination": "x"}]],
)  # fmt: skip
def test_rules_that_do_not_decode_make_the_record_unreadable(rules: Any) -> None:
    record = [[1, 1], 99, 7, 3, "https://example.com/", True, None, rules]
    assert mirror.decode("abc", orjson.dumps(record)) is None


@given(LINKS, st.integers(0, 1000).filter(lambda m: m != mirror.MAJOR), st.lists(JSON))
def test_another_major_is_never_read(link: EdgeLink, major: int, rest: list[Any]) -> None:
    record = orjson.loads(mirror.encode(link))
    record[0][0] = major
    assert mirror.decode(link.code, orjson.dumps(record)) is None
    assert mirror.decode(link.code, orjson.dumps([[major, 0], *rest])) is None


@given(st.binary(max_size=200) | JSON.map(orjson.dumps))
def test_nothing_in_redis_makes_the_reader_raise(raw: bytes) -> None:
    decoded = mirror.decode("code", raw)
    assert decoded is None or isinstance(decoded, EdgeLink)
