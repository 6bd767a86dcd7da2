"""The real web app or the real flusher as the *next* release would run them, one minor
version of the click record ahead: ``python -m tests.faults.next_web`` and
``python -m tests.faults.next_flusher`` (``run_web``, ``run_flusher``).

Scenario 17 rolls such a release out and back next to today's processes. What "next" means
here, precisely (the rules are in ``app/clicks/record.py``):

- web: ``python -m app.serve`` whose ``app.clicks.record.encode``, which the redirect calls
  for every click, is replaced in this process by the next release's encoder: the same
  record with ``"mv": MINOR + 1`` and one more field, ``"ab"`` (a string: say, the arm of an
  A/B test). Today's flusher must read it, ignoring ``"ab"``.
- flusher: ``python -m app.flusher`` whose reader of major 1 (``record.READERS[1]``) is
  replaced by the next release's: it reads ``"ab"`` (a string, or absent in the records of
  today's web, of any older minor: then ``"control"``), refuses any other type as a dead
  letter would be, then reads the rest as today. There is no column for ``"ab"``: a real
  release would add one (a migration first) and store it; this one counts, per minor, the
  records it read, and logs ``minors_read {"<minor>": <count>, ...}`` when it stops.

Nothing else differs from the real processes. Used only by the fault suite, never by the app.
"""

from __future__ import annotations

import collections
import sys
from typing import Any, cast

import orjson

from app.clicks import record
from app.clicks.record import Click, EventError

NEXT_MINOR = record.MINOR + 1
NEW_FIELD = "ab"
DEFAULT = "control"
MARKER = "minors_read"
_encode_today = record.encode
_read_today = record.READERS[1]
read_minors: collections.Counter[int] = collections.Counter()


def encode_next(click: Click) -> bytes:
    body = orjson.loads(_encode_today(click))
    body["mv"] = NEXT_MINOR
    body[NEW_FIELD] = "arm-b" if click.session_id < "8" else "arm-a"
    return orjson.dumps(body)


def read_next(body: dict[str, Any]) -> Click:
    arm = body.get(NEW_FIELD, DEFAULT)
    if type(arm) is not str:
        raise EventError(f"field {NEW_FIELD!r} has a wrong or missing value")
    read_minors[body.get("mv", 0)] += 1
    return _read_today(body)


def run_web() -> int:
    from app.serve import main

    record.encode = encode_next
    return main()


def run_flusher() -> int:
    from app.flusher.__main__ import main

    # In place: the flusher's default readers are this very mapping.
    cast(dict[int, record.Reader], record.READERS)[1] = read_next
    try:
        return main([])
    finally:
        counts = {str(minor): n for minor, n in sorted(read_minors.items())}
        print(f"{MARKER} {orjson.dumps(counts).decode()}", file=sys.stderr, flush=True)
