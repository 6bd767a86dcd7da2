"""CSV exports: UTF-8, a header row, CRLF line ends (RFC 4180), streamed in chunks, safe to
open in a spreadsheet.

Quoting: every text cell (a ``str``, header names included) is written between double quotes,
``"`` inside doubled; numbers, decimals, dates, times, flags and ``None`` (an empty cell) are
written bare. They never hold a comma, a quote or a line break, so bare is exact RFC 4180.
Python 3.11's ``csv`` module cannot say this: ``QUOTE_NONNUMERIC`` also quotes ``None``, dates
and flags, and ``QUOTE_STRINGS`` is 3.12+; so the rule is written here (``row_line``).

Formula injection (OWASP's rule): a text cell that starts with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return gets a single quote in front, so a spreadsheet shows it as text
instead of running it. A text cell that starts with a quote gets one more.

Quotes alone do not stop a program that splits lines on ``;`` (many locales' spreadsheets):
it honours a ``"`` only at the start of one of its own fields, so in ``1,"b;=1"`` it sees
``1,"b`` and ``=1"``. So the same rule applies after every ``;``, carriage return and line
feed inside a text cell, where such a program may start a field or a line, with ``"`` and
"nothing more" (the text ends there) guarded too: ``b;=1`` is written ``b;'=1``, ``a;`` is
written ``a;'``. The rule is undone exactly by ``restore``: remove one ``'`` at the start of
the text and one right after every ``;``, carriage return and line feed.
Numbers, times and dates are written by the service itself and never neutralised: a
chargeback's ``-3.20`` stays a number.

Times are written as the wall clock of their own zone (``YYYY-MM-DD HH:MM:SS``): a report
gives them in the period time zone, and a column holding a day or a time names that zone at
its end (``zoned``: ``order_time_asia_shanghai``), so the file says which clock it is.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import date, datetime, tzinfo
from decimal import Decimal

from app.traffic.days import zone_label

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
BOM = "\ufeff"
CHUNK_CHARS = 64 * 1024
LINE_END = "\r\n"
# Where a program splitting on ";" may start a field or a line inside a quoted text cell.
SPLITS = (";", "\r", "\n")

_AFTER_SPLIT = re.compile(
    "([" + re.escape("".join(SPLITS)) + "])"
    "(?=[" + re.escape("".join(FORMULA_STARTS) + QUOTE + '"') + r"]|\Z)"
)
_GUARD_AFTER_SPLIT = re.compile("([" + re.escape("".join(SPLITS)) + "])" + QUOTE)

Cell = str | int | Decimal | date | datetime | bool | None


def neutralise(text: str) -> str:
    """The text as a cell a spreadsheet will not evaluate (see the module's docstring)."""
    text = _AFTER_SPLIT.sub(r"\1" + QUOTE, text)
    if text.startswith(FORMULA_STARTS) or text.startswith(QUOTE):
        return QUOTE + text
    return text


def restore(shown: str) -> str:
    """``neutralise`` undone: the text as it was stored."""
    if shown.startswith(QUOTE):
        shown = shown[1:]
    return _GUARD_AFTER_SPLIT.sub(r"\1", shown)


def cell(value: Cell) -> str:
    """The cell's text, before quoting: text neutralised, the rest as the service writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):  # before date: a datetime is a date
        return value.strftime("%Y-%m-%d %H:%M:%S")  # its wall clock, in its own zone
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | Decimal):
        return str(value)
    return neutralise(value)


def zoned(column: str, tz: tzinfo) -> str:
    """A date or time column's name, stating the zone of its values: ``order_time_utc``,
    ``day_asia_shanghai``."""
    return f"{column}_{zone_label(tz)}"


def field(value: Cell) -> str:
    """The cell as written in the line: text quoted (``""`` for a ``"``), the rest bare."""
    if isinstance(value, str):
        return '"' + cell(value).replace('"', '""') + '"'
    return cell(value)


def row_line(values: Sequence[Cell]) -> str:
    """One CSV line, CRLF included."""
    line = ",".join(field(value) for value in values)
    if line == "" and values:  # one empty cell: a blank line would read as no row at all
        line = '""'
    return line + LINE_END


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
    if bom:
        buffer.write(BOM)
    buffer.write(row_line(header))
    async for row in rows:
        buffer.write(row_line(row))
        if buffer.tell() >= chunk_chars:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
