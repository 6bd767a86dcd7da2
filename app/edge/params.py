"""The tracking strings ``af``, ``cn``, ``cv``, ``dp``: parsing and validation, pure.

A value is kept only when it is valid UTF-8, at most 128 characters once decoded and free of
control and invisible characters (``app/core/chars.py``: categories Cc, Cf, Zl, Zp and a few
invisible letters, so a bidi override or a zero-width space cannot make two ids look alike in
a report); otherwise it is dropped and the click flagged ``params_invalid``. A repeated
parameter keeps its first non-empty value (``af=&af=1`` is ``1``; an invalid value is
non-empty: it wins, and is dropped). An empty value counts as absent.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

# The value rule is shared with the link builder (app/links/builder.py): app/core/tracking.py.
from app.core.tracking import MAX_VALUE_LENGTH as MAX_VALUE_LENGTH
from app.core.tracking import value_problem

TRACKING_NAMES = (b"af", b"cn", b"cv", b"dp")


class TrackingStrings(NamedTuple):
    af: str | None = None
    cn: str | None = None
    cv: str | None = None
    dp: str | None = None
    invalid: bool = False


def _decode(raw: bytes) -> bytes:
    if b"%" in raw or b"+" in raw:
        return unquote_to_bytes(raw.replace(b"+", b" "))
    return raw


def _valid_text(raw: bytes) -> str | None:
    if raw.isascii():  # the usual case, checked without a regular expression (in ASCII,
        text = raw.decode("ascii")  # the refused characters are exactly the unprintable ones)
        return text if len(text) <= MAX_VALUE_LENGTH and text.isprintable() else None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if value_problem(text) else text


_NONE = TrackingStrings()


def parse_tracking(query_string: bytes) -> TrackingStrings:
    if not query_string:
        return _NONE
    pairs: list[tuple[bytes, bytes]]
    if b"%" in query_string or b"+" in query_string:
        pairs = [_decoded_pair(pair) for pair in query_string.split(b"&")]
    else:  # nothing encoded, the usual case: one scan in C finds the tracking pairs
        pairs = _PLAIN_TRACKING_PAIR.findall(query_string)
    found: dict[bytes, str | None] = {}  # name -> value; None: invalid, "": empty
    for name, raw_value in pairs:  # the first non-empty value wins: "" can be replaced
        if name in TRACKING_NAMES and found.get(name, "") == "":
            found[name] = _valid_text(raw_value)
    if not found:
        return _NONE
    return TrackingStrings(
        found.get(b"af") or None,
        found.get(b"cn") or None,
        found.get(b"cv") or None,
        found.get(b"dp") or None,
        None in found.values(),
    )


# A tracking name with its value (up to the next "&"; none without "="), as a whole pair.
_PLAIN_TRACKING_PAIR = re.compile(rb"(?:^|&)(af|cn|cv|dp)(?:=([^&]*))?(?=&|$)")


def _decoded_pair(pair: bytes) -> tuple[bytes, bytes]:
    name, _, value = pair.partition(b"=")
    if name not in TRACKING_NAMES:
        name = _decode(name)
    return name, _decode(value) if name in TRACKING_NAMES else value


def first_value(query_string: bytes, name: bytes) -> str | None:
    """The first non-empty value of the query parameter ``name`` (UTF-8, compared with each
    name as a server decodes it: ``utm%5Fsource`` is ``utm_source``), decoded and checked as
    a tracking value is; None when the parameter is absent or only empty, or when its first
    non-empty value would be dropped (a link's ``param`` rules, ``app/edge/rules.py``)."""
    if not query_string:
        return None
    for pair in query_string.split(b"&"):
        raw_name, _, raw_value = pair.partition(b"=")
        if raw_value and _decode(raw_name) == name:
            return _valid_text(_decode(raw_value))
    return None
