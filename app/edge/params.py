"""The tracking strings ``af``, ``cn``, ``cv``, ``dp``: parsing and validation, pure.

A value is kept only when it is valid UTF-8, at most 128 characters once decoded and free of
control characters; otherwise it is dropped and the click flagged ``params_invalid``. A
repeated parameter keeps its first value. An empty value counts as absent.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

TRACKING_NAMES = (b"af", b"cn", b"cv", b"dp")
MAX_VALUE_LENGTH = 128
# C0 controls, DEL and C1 controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


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
    if raw.isascii():  # the usual case, checked without a regular expression
        text = raw.decode("ascii")
        return text if len(text) <= MAX_VALUE_LENGTH and text.isprintable() else None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) > MAX_VALUE_LENGTH or _CONTROL.search(text):
        return None
    return text


_NONE = TrackingStrings()


def parse_tracking(query_string: bytes) -> TrackingStrings:
    if not query_string:
        return _NONE
    # Most query strings hold nothing encoded: then no part needs decoding.
    encoded = b"%" in query_string or b"+" in query_string
    found: dict[bytes, str | None] = {}  # name -> value; None: invalid, "": empty
    for pair in query_string.split(b"&"):
        name, _, raw_value = pair.partition(b"=")
        if encoded and name not in TRACKING_NAMES:
            name = _decode(name)
        if name in TRACKING_NAMES and name not in found:
            found[name] = _valid_text(_decode(raw_value) if encoded else raw_value)
    if not found:
        return _NONE
    return TrackingStrings(
        found.get(b"af") or None,
        found.get(b"cn") or None,
        found.get(b"cv") or None,
        found.get(b"dp") or None,
        None in found.values(),
    )
