"""CSV exports: UTF-8, a header row, CRLF line ends (RFC 4180), streamed in chunks, safe to
open in a spreadsheet.

Formula injection (OWASP's rule): a text cell that starts with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return gets a single quote in front, so a spreadsheet shows it as text
instead of running it. A text cell that starts with a quote gets one more, so the rule is
undone exactly by removing one leading quote from every text cell that starts with one.
Numbers, times and dates are written by the service itself and never neutralised: a
chargeback's ``-3.20`` stays a number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
BOM = "\ufeff"
CHUNK_CHARS = 64 * 1024

Cell = str | int | Decimal | date | datetime | bool | None


def neutralise(text: str) -> str:
    """The text as a cell a spreadsheet will not evaluate (see the module's docstring)."""
    if text.startswith(FORMULA_STARTS) or text.startswith(QUOTE):
        return QUOTE + text
    return text


def cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):  # before date: a datetime is a date
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | Decimal):
        return str(value)
    return neutralise(value)


async def csv_chunks(
    header: Sequence[str],
    rows: AsyncIterable[Sequence[Cell]],
    *,
    bom: bool = False,
    chunk_chars: int = CHUNK_CHARS,
) -> AsyncIterator[bytes]:
    """The CSV text of ``rows`` under ``header``, UTF-8, in chunks of about
    ``chunk_chars`` characters: memory stays bounded however many rows come."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if bom:
        buffer.write(BOM)
    writer.writerow([cell(name) for name in header])
    async for row in rows:
        writer.writerow([cell(value) for value in row])
        if buffer.tell() >= chunk_chars:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
