"""CSV cells: formula injection neutralised (OWASP), reversibly, also where a program splitting
on ";" starts a field; every text cell quoted, numbers left alone; output streamed in chunks."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.reports import traffic
from app.reports.csvout import (
    FORMULA_STARTS,
    SPLITS,
    Cell,
    cell,
    csv_chunks,
    field,
    neutralise,
    restore,
    row_line,
)
from app.traffic.counts import Dimension, TrafficRow, empty_row


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+33 1 23", "'+33 1 23"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'quoted", "''quoted"),
        ("blog-42", "blog-42"),
        ("", ""),
        ("新闻", "新闻"),
        (" =1", " =1"),
        # After a ";" or a line break, where a ";"-splitting program starts a field or line:
        ("x;=1+1;", "x;'=1+1;'"),
        ("b;=1", "b;'=1"),
        ("a;b", "a;b"),
        ('a;"=1', "a;'\"=1"),
        ("a;'", "a;''"),
        ("a\r\n=1", "a\r\n'=1"),
        ("a\n@x", "a\n'@x"),
        ("=a;-b", "'=a;'-b"),
        ("a,=1", "a,=1"),
    ],
)
def test_formula_starts_get_a_quote(text: str, shown: str) -> None:
    assert neutralise(text) == shown


@given(st.text())
def test_the_rule_is_undone_by_dropping_one_leading_quote(text: str) -> None:
    shown = neutralise(text)
    assert not shown.startswith(("=", "+", "-", "@", "\t", "\r"))
    if not any(split in text for split in SPLITS):
        assert (shown[1:] if shown.startswith("'") else shown) == text
    assert restore(shown) == text


def test_numbers_times_and_flags_are_written_as_is() -> None:
    east = timezone(timedelta(hours=8))
    assert cell(Decimal("-3.20")) == "-3.20"
    assert cell(-5) == "-5"
    assert cell(None) == ""
    assert cell(True) == "true"
    assert cell(date(2026, 1, 2)) == "2026-01-02"
    # A time is its wall clock in its own zone: reports give times in the period zone.
    assert cell(datetime(2026, 1, 2, 8, 0, tzinfo=east)) == "2026-01-02 08:00:00"
    assert cell(datetime(2026, 1, 2, 0, 0, 1, tzinfo=UTC)) == "2026-01-02 00:00:01"


async def rows(count: int) -> AsyncIterator[Sequence[Cell]]:
    for n in range(count):
        yield (n, f"=row {n}", Decimal("1.50"), None)


async def test_chunks_stream_and_parse_back() -> None:
    chunks = [
        c async for c in csv_chunks(("n", "text", "amount", "none"), rows(5000), chunk_chars=4096)
    ]
    assert len(chunks) > 10 and all(len(c) < 4096 + 200 for c in chunks)
    table = list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8"))))
    assert table[0] == ["n", "text", "amount", "none"]
    assert table[4001] == ["4000", "'=row 4000", "1.50", ""]
    assert len(table) == 5001


async def test_a_byte_order_mark_on_request() -> None:
    with_bom = b"".join([c async for c in csv_chunks(("a",), rows(0), bom=True)])
    assert with_bom == b'\xef\xbb\xbf"a"\r\n'
    plain = b"".join([c async for c in csv_chunks(("a",), rows(0))])
    assert plain == b'"a"\r\n'


def test_text_cells_are_quoted_the_rest_bare() -> None:
    east = timezone(timedelta(hours=8))
    assert field("blog") == '"blog"'
    assert field("") == '""'
    assert field('say "hi"') == '"say ""hi"""'
    assert field("=1") == '"\'=1"'
    assert field(None) == ""
    assert field(Decimal("-3.20")) == "-3.20"
    assert field(7) == "7"
    assert field(False) == "false"
    assert field(date(2026, 1, 2)) == "2026-01-02"
    assert field(datetime(2026, 1, 2, 8, 0, tzinfo=east)) == "2026-01-02 08:00:00"
    assert row_line(["a", None, 1, Decimal("-1.5")]) == '"a",,1,-1.5\r\n'
    assert row_line([None]) == '""\r\n'  # not a blank line, which reads as no row


async def _one(row: TrafficRow) -> AsyncIterator[TrafficRow]:
    yield row


async def test_the_handed_traffic_row_is_quoted_and_guarded() -> None:
    """Issue 16: af=`x;=1+1;` was written `x;=1+1;,,1,1,1,0`, so a ";"-splitting spreadsheet
    saw a cell `=1+1`."""
    group_by = [Dimension.af, Dimension.cn]
    row = empty_row()._replace(af="x;=1+1;", clicks=1, unique_clicks=1)
    chunks = csv_chunks(traffic.csv_header(group_by, UTC), traffic.csv_rows(_one(row), group_by))
    text = b"".join([c async for c in chunks]).decode("utf-8")
    lines = text.split("\r\n")
    assert lines[0] == '"af","cn","clicks","billable_clicks","unique_clicks","flagged_clicks"'
    assert lines[1] == "\"x;'=1+1;'\",,1,1,1,0"
    assert lines[2:] == [""]
    for delimiter in (",", ";"):
        for parsed in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            assert not any(f.startswith(FORMULA_STARTS) for f in parsed), (delimiter, parsed)
    assert list(csv.reader(io.StringIO(text)))[1] == ["x;'=1+1;'", "", "1", "1", "1", "0"]


_text_cells = st.text(alphabet=st.sampled_from("=+-@\t\r\n;,\"' ax1")) | st.text()
_other_cells = st.none() | st.integers(min_value=0) | st.sampled_from([date(2026, 1, 2)])


@given(st.lists(_text_cells | _other_cells, min_size=1, max_size=6))
def test_no_split_of_a_line_starts_a_field_with_a_formula(values: list[Cell]) -> None:
    """Read back with "," and with ";" as the delimiter (a ";" locale's spreadsheet), no field
    starts like a formula: the guard's quote comes first wherever one could. With ",", the
    line reads back exactly as the cells."""
    line = row_line(values)
    for delimiter in (",", ";"):
        for parsed in csv.reader(io.StringIO(line, newline=""), delimiter=delimiter):
            for found in parsed:
                assert not found.startswith(FORMULA_STARTS), (delimiter, line, found)
    (back,) = list(csv.reader(io.StringIO(line, newline="")))
    assert back == [cell(value) for value in values]
    assert [restore(f) for f, v in zip(back, values, strict=True) if isinstance(v, str)] == [
        v for v in values if isinstance(v, str)
    ]
