"""The tracking strings ``af``, ``cn``, ``cv``, ``dp``: parsing and validation, pure.

A value is kept only when it is valid UTF-8, at most 128 characters once decoded and free of
control characters; otherwise it is dropped and the click flagged ``params_invalid``. A
repeated parameter keeps its first value. An empty value counts as absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

TRACKING_NAMES = (b"af", b"cn", b"cv", b"dp")
MAX_VALUE_LENGTH = 128
# C0 controls, DEL and C1 controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class TrackingStrings:
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
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) > MAX_VALUE_LENGTH or _CONTROL.search(text):
        return None
    return text


def parse_tracking(query_string: bytes) -> TrackingStrings:
    if not query_string:
        return TrackingStrings()
    found: dict[bytes, str] = {}
    seen: set[bytes] = set()
    invalid = False
    for pair in query_string.split(b"&"):
        raw_name, _, raw_value = pair.partition(b"=")
        name = raw_name if raw_name in TRACKING_NAMES else _decode(raw_name)
        if name not in TRACKING_NAMES or name in seen:
            continue
        seen.add(name)
        value = _valid_text(_decode(raw_value))
        if value is None:
            invalid = True
        elif value:
            found[name] = value
    return TrackingStrings(
        found.get(b"af"), found.get(b"cn"), found.get(b"cv"), found.get(b"dp"), invalid
    )
