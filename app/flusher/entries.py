"""What the entries of a batch become: clicks to store, dead letters, parked entries.

Pure (no I/O): the loop reads the entries, this module sorts them, the loop stores and acks.

- A record of a major version the flusher reads (``record.READERS``, any minor) is a click.
- A record of another major (``UnknownVersion``: a newer web in front of this flusher, or a
  retired major) is **parked**: kept in the shard's parked stream, with the reason, for a
  flusher that reads it (``python -m app.cli redrive --from parked``). Never a dead letter.
- Anything else (not JSON, no ``c`` field, a wrong field, a value Postgres would refuse) is a
  **dead letter**, with the reason and the payload as it came.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from app.clicks.record import (
    READERS,
    STREAM_FIELD,
    Click,
    EventError,
    Flag,
    Reader,
    UnknownVersion,
    decode,
)
from app.clicks.stream import DeadLetter, Entry, Parked
from app.core.metrics import CLICK_FLAGS
from app.dimensions.resolve import Resolver
from app.flusher.dimensions import of_click
from app.flusher.sink import Row, to_row


@dataclass
class Sorted:
    """The entries of one batch, sorted: every entry is in exactly one of the three lists."""

    clicks: list[tuple[bytes, bytes, Click]] = field(default_factory=list)  # id, payload, click
    dead: list[DeadLetter] = field(default_factory=list)
    parked: list[Parked] = field(default_factory=list)


def sort_entries(entries: Iterable[Entry], readers: Mapping[int, Reader] = READERS) -> Sorted:
    """Decode each entry's payload: a click, a dead letter or a parked entry."""
    result = Sorted()
    for entry_id, fields in entries:
        payload = fields.get(STREAM_FIELD)
        if payload is None:
            result.dead.append(DeadLetter(entry_id, "no field c", None))
            continue
        try:
            result.clicks.append((entry_id, payload, decode(payload, readers)))
        except UnknownVersion as exc:
            result.parked.append(Parked(entry_id, str(exc), payload))
        except EventError as exc:
            result.dead.append(DeadLetter(entry_id, str(exc), payload))
    return result


def to_rows(
    clicks: Iterable[tuple[bytes, bytes, Click]],
    dead: list[DeadLetter],
    resolver: Resolver | None = None,
) -> list[Row]:
    """Rows of the clicks Postgres will take, with their dimensions when a ``resolver`` is
    given; the others join the dead letters, with the payload as it came (a newer minor's
    fields included)."""
    rows: list[Row] = []
    for entry_id, payload, click in clicks:
        try:
            rows.append(to_row(click, of_click(resolver, click)))
        except EventError as exc:
            dead.append(DeadLetter(entry_id, str(exc), payload))
    return rows


def count_flags(clicks: Iterable[Click]) -> None:
    counts: collections.Counter[str] = collections.Counter()
    for click in clicks:
        if click.flags:
            counts.update(flag.name for flag in Flag if click.flags & flag and flag.name)
    for name, count in counts.items():
        CLICK_FLAGS.labels(name).inc(count)
