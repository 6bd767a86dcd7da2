"""The link mirror record: what one release writes, this one reads, whatever else it carries;
and nothing in Redis can make the reader raise."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from app.links import mirror
from app.links.mirror import EdgeLink

INT64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | INT64 | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
LINKS = st.builds(
    EdgeLink,
    id=st.integers(1, 2**63 - 1),
    code=st.from_regex(r"[A-Za-z0-9]{1,32}", fullmatch=True),
    publisher_id=st.integers(1, 2**63 - 1),
    destination=TEXT,
    active=st.booleans(),
    expires_at=st.none() | st.floats(0, 1e11, allow_nan=False),
    updated_us=st.integers(0, 2**62),
)


@given(LINKS)
def test_a_record_reads_back_as_written(link: EdgeLink) -> None:
    assert mirror.decode(link.code, mirror.encode(link)) == link


@given(LINKS)
def test_an_unversioned_record_reads_back_without_its_time(link: EdgeLink) -> None:
    decoded = mirror.decode(link.code, mirror.encode(link, legacy=True))
    assert decoded == EdgeLink(
        link.id, link.code, link.publisher_id, link.destination, link.active, link.expires_at
    )


@given(LINKS, st.integers(0, 1000), st.lists(JSON, max_size=4))
def test_a_newer_minor_with_more_fields_reads_the_fields_we_know(
    link: EdgeLink, minor: int, extra: list[Any]
) -> None:
    record = orjson.loads(mirror.encode(link))
    record[0][1] = minor
    assert mirror.decode(link.code, orjson.dumps([*record, *extra])) == link


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
