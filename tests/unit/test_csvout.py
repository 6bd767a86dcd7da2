"""CSV cells: formula injection neutralised (OWASP), reversibly; numbers left alone; output
streamed in chunks."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.reports.csvout import Cell, cell, csv_chunks, neutralise


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
    ],
)
def test_formula_starts_get_a_quote(text: str, shown: str) -> None:
    assert neutralise(text) == shown


@given(st.text())
def test_the_rule_is_undone_by_dropping_one_leading_quote(text: str) -> None:
    shown = neutralise(text)
    assert not shown.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert (shown[1:] if shown.startswith("'") else shown) == text


def test_numbers_times_and_flags_are_written_as_is() -> None:
    east = timezone(timedelta(hours=8))
    assert cell(Decimal("-3.20")) == "-3.20"
    assert cell(-5) == "-5"
    assert cell(None) == ""
    assert cell(True) == "true"
    assert cell(date(2026, 1, 2)) == "2026-01-02"
    assert cell(datetime(2026, 1, 2, 8, 0, tzinfo=east)) == "2026-01-02 00:00:00"
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
    assert with_bom == b"\xef\xbb\xbfa\r\n"
    plain = b"".join([c async for c in csv_chunks(("a",), rows(0))])
    assert plain == b"a\r\n"
