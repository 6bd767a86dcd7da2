"""The click record and its stream encoding: THE contract between the redirect and the flusher.

One stream entry per click, one field ``c`` holding a JSON object. The flusher must accept
every version ever written (``v``); add fields, never change the meaning of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

import orjson

from app.errors import ClickTrackError

STREAM_FIELD = b"c"
VERSION = 1
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


class EventError(ClickTrackError, ValueError):
    """A stream entry that is not a valid click (it goes to the dead-letter stream)."""


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
}


def encode(click: Click) -> bytes:
    # Spelled out rather than looped over _FIELDS: this runs once per redirect.
    return orjson.dumps(
        {
            "v": VERSION,
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
        }
    )


def decode(raw: bytes) -> Click:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"not JSON: {exc}") from None
    version = body.get("v") if isinstance(body, dict) else None
    if type(version) is not int or version != VERSION:
        raise EventError("not a click record of a known version")
    get = body.get
    click = Click(
        get("id"), get("t"), get("l"), get("code"), get("p"),
        get("af"), get("cn"), get("cv"), get("dp"),
        get("s"), get("sn"), get("ip"), get("ua"), get("ref"), get("lang"),
        get("m"), get("f"),
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
