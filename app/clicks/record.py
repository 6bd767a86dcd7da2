"""The click record and its stream encoding: THE contract between the redirect and the flusher.

One stream entry per click, one field ``c`` holding a JSON object: the envelope, ``v`` and
``mv``, and the click's fields (``_FIELDS``: short key -> ``Click`` attribute).

Versions. ``v`` is the record's MAJOR version (an int, 1 and up; today ``MAJOR`` = 1) and
``mv`` its MINOR (an int, 0 and up; absent means 0; today ``MINOR`` = 3, which ``encode``
writes). The envelope never changes: every record of every version is a JSON object with an
int ``v``. Rules:

- **Minor** (``mv`` + 1): add an optional field. Nothing else. Every reader ignores keys it
  does not know, so a reader of an older minor reads a newer record (the new field is lost
  to it, nothing else); a reader of a newer minor must read an older record, where the new
  field is absent (records of the old writers, spools replayed late, parked or dead letters
  redriven): a field added in a minor is optional to every reader, for ever.
- **Major** (``v`` + 1, ``mv`` back to 0): any change an old reader would misread if it
  ignored it: a field removed, renamed, re-typed or made required, a unit or a meaning
  changed. Never reuse a key, not even across majors.
- ``decode`` is given the majors it reads (``READERS``: major -> reader). A record of any
  other major (an int of 1 or more) raises ``UnknownVersion``: the flusher parks it (a side
  stream per shard, ``RedisKeys.parked_stream``), it does not dead-letter it, and it can be
  moved back (``python -m app.cli redrive --from parked``) once a flusher that reads it
  runs. Anything else that is not a valid record raises ``EventError``: a dead letter.
- Upgrade order (docs/operations.md, "Record versions"): a minor in either order; a major
  needs flushers that read it everywhere before the first web pod writes it.

Minors of major 1:

- 1.0: the fields up to ``f``.
- 1.1: ``ipk`` (``Click.ip_key``), the per-IP duplicate rule's key: a keyed hash of the full
  client address (``app/edge/privacy.py``), whatever ``ip`` keeps of it. Optional: absent in
  1.0 records (the rule then judges ``ip``), null for a click without a client address.
  Never stored in Postgres.
- 1.2: ``cc`` (``Click.country``), the client's country (ISO 3166-1 alpha-2) as the redirect
  resolved it from the full address, written only when ``CLICKTRACK_IP_MODE`` truncates or
  hashes the stored ``ip`` (the flusher could not resolve it from what is left; in full mode
  the flusher resolves it from ``ip``). Optional: absent in 1.0 and 1.1 records, null when
  not resolved there; an older flusher ignores it (the click is stored without a country).
- 1.3: ``r`` (``Click.rule``), which of the link's rules chose the click's destination
  (issue 19), 1-based; null when none did (the link's own destination). Optional: absent in
  older records (no rule: before rules existed); an older flusher ignores it (the click is
  stored without its rule). Since 1.3 ``cc`` is also written in full mode when the redirect
  knew the country: from the trusted proxy's country header, or resolved for a country rule
  (its meaning is unchanged: the client's country as the redirect resolved it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntFlag
from typing import Any

import orjson

from app.errors import ClickTrackError

STREAM_FIELD = b"c"
MAJOR = 1
MINOR = 3
MAX_USER_AGENT = 512
MAX_REFERER = 1024
MAX_ACCEPT_LANGUAGE = 128


class Flag(IntFlag):
    """Quality flags; any flag makes a click non-billable. Stored as one smallint."""

    bot = 1
    prefetch = 2
    iframe = 4
    duplicate = 8
    params_invalid = 16
    head = 32
    # A click over one of its link's click caps (app/edge/caps.py), or whose caps could not
    # be checked (Redis unavailable). Set by the redirect whatever CLICKTRACK_FLAG_* says.
    # No record version: flags was always an int; a reader whose Flag lacks the bit keeps
    # it (IntFlag's default boundary) and counts the click flagged, as any flag.
    over_cap = 64


class EventError(ClickTrackError, ValueError):
    """A stream entry that is not a valid click (it goes to the dead-letter stream)."""


class UnknownVersion(EventError):
    """A record of a major version this reader does not read (newer, or retired): it goes
    to the parked stream, not to the dead letters. ``major`` and ``minor`` are the record's."""

    def __init__(self, message: str, *, major: int, minor: int) -> None:
        super().__init__(message)
        self.major = major
        self.minor = minor


@dataclass(slots=True)
class Click:
    click_id: str  # UUIDv7, canonical text form; time-ordered
    ts_us: int  # server time, microseconds since the epoch, UTC
    link_id: int
    code: str
    publisher_id: int
    af: str | None
    cn: str | None
    cv: str | None
    dp: str | None
    session_id: str
    session_new: bool
    ip: str | None
    user_agent: str | None
    referer: str | None
    accept_language: str | None
    method: str
    flags: int
    # Minor 1: the per-IP duplicate rule's key (keyed hash of the full address, 32 hex
    # characters); None in older records. Judged in Redis, never stored in Postgres.
    ip_key: str | None = None
    # Minor 2: the country the redirect resolved: from the full address in truncate and hash
    # modes, since minor 3 also from the trusted country header or for a country rule; None
    # in older records, and when the redirect did not resolve it (the flusher does).
    country: str | None = None
    # Minor 3: the 1-based position of the link's rule that chose the destination; None
    # when none did, and in older records.
    rule: int | None = None


_FIELDS = {
    "id": "click_id",
    "t": "ts_us",
    "l": "link_id",
    "code": "code",
    "p": "publisher_id",
    "af": "af",
    "cn": "cn",
    "cv": "cv",
    "dp": "dp",
    "s": "session_id",
    "sn": "session_new",
    "ip": "ip",
    "ua": "user_agent",
    "ref": "referer",
    "lang": "accept_language",
    "m": "method",
    "f": "flags",
    "ipk": "ip_key",
    "cc": "country",
    "r": "rule",
}
_TYPES: dict[str, tuple[type, ...]] = {
    "click_id": (str,),
    "ts_us": (int,),
    "link_id": (int,),
    "code": (str,),
    "publisher_id": (int,),
    "session_id": (str,),
    "session_new": (bool,),
    "method": (str,),
    "flags": (int,),
    "rule": (int, type(None)),
}


def encode(click: Click) -> bytes:
    """The click as the payload of its stream entry: a JSON object of version MAJOR.MINOR."""
    # Spelled out rather than looped over _FIELDS: this runs once per redirect. "mv" is
    # written since minor 1 (tests/unit/test_events.py checks it is MINOR).
    return orjson.dumps(
        {
            "v": MAJOR,
            "mv": MINOR,
            "id": click.click_id,
            "t": click.ts_us,
            "l": click.link_id,
            "code": click.code,
            "p": click.publisher_id,
            "af": click.af,
            "cn": click.cn,
            "cv": click.cv,
            "dp": click.dp,
            "s": click.session_id,
            "sn": click.session_new,
            "ip": click.ip,
            "ua": click.user_agent,
            "ref": click.referer,
            "lang": click.accept_language,
            "m": click.method,
            "f": click.flags,
            "ipk": click.ip_key,
            "cc": click.country,
            "r": click.rule,
        }
    )


Reader = Callable[[dict[str, Any]], Click]
"""Reads the body of a record of one major version (its envelope checked) into a Click;
raises ``EventError`` for a body that breaks that version's rules."""


def _read_v1(body: dict[str, Any]) -> Click:
    """Major 1, every minor: the fields of ``_FIELDS``, those of minors after 1.0 optional
    (absent: None); keys of later minors are ignored."""
    get: Callable[[str], Any] = body.get  # what JSON holds: checked below
    click = Click(
        get("id"), get("t"), get("l"), get("code"), get("p"),
        get("af"), get("cn"), get("cv"), get("dp"),
        get("s"), get("sn"), get("ip"), get("ua"), get("ref"), get("lang"),
        get("m"), get("f"), get("ipk"), get("cc"), get("r"),
    )  # fmt: skip
    # Checked in one expression (this runs for every stored click); `type(x) is int` also
    # keeps true/false out of the numbers. The loop below only names the culprit.
    if not (
        type(click.click_id) is str
        and type(click.ts_us) is int
        and type(click.link_id) is int
        and type(click.code) is str
        and type(click.publisher_id) is int
        and type(click.session_id) is str
        and type(click.session_new) is bool
        and type(click.method) is str
        and type(click.flags) is int
        and (click.af is None or type(click.af) is str)
        and (click.cn is None or type(click.cn) is str)
        and (click.cv is None or type(click.cv) is str)
        and (click.dp is None or type(click.dp) is str)
        and (click.ip is None or type(click.ip) is str)
        and (click.user_agent is None or type(click.user_agent) is str)
        and (click.referer is None or type(click.referer) is str)
        and (click.accept_language is None or type(click.accept_language) is str)
        and (click.ip_key is None or type(click.ip_key) is str)
        and (click.country is None or type(click.country) is str)
        and (click.rule is None or type(click.rule) is int)
    ):
        for short, name in _FIELDS.items():
            value = body.get(short)
            expected = _TYPES.get(name, (str, type(None)))
            if not isinstance(value, expected) or (
                isinstance(value, bool) and bool not in expected
            ):
                raise EventError(f"field {short!r} has a wrong or missing value")
        raise EventError("a field has a wrong value")
    return click


READERS: Mapping[int, Reader] = {1: _read_v1}
"""The majors this code reads, and how. A new major adds its reader here (and keeps the old
one until no record of the old major can remain: the streams, spools and parked entries)."""


def decode(raw: bytes, readers: Mapping[int, Reader] = READERS) -> Click:
    """The click of a stream entry's payload (JSON bytes), of any minor of a major in
    ``readers`` (by default ``READERS``: every major this code reads). Raises
    ``UnknownVersion`` for a well-formed envelope of another major, ``EventError`` for
    anything else that is not a click."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"not JSON: {exc}") from None
    if type(body) is not dict:
        raise EventError("not a click record of a known version")
    major = body.get("v")
    minor = body.get("mv", 0)
    # `type(x) is int` keeps true/false (and floats equal to an int) out of the versions.
    if type(major) is not int or major < 1 or type(minor) is not int or minor < 0:
        raise EventError("not a click record of a known version")
    reader = readers.get(major)
    if reader is None:
        known = ", ".join(map(str, sorted(readers)))
        raise UnknownVersion(
            f"record version {major}.{minor}: this reader reads major {known}",
            major=major,
            minor=minor,
        )
    return reader(body)
