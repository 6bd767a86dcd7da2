"""``/e/{code}`` against hostile paths, queries, headers and methods.

The requests are ASGI scopes built by hand and given to the app directly, so bytes that an
HTTP server would refuse (CR, LF, NUL, invalid UTF-8) reach the handler as they are; the
wire itself is tested in test_http_wire.py. What must hold for any input: no 5xx, no header
carrying CR, LF or NUL, a Location that is always the link's stored destination plus a
fresh click id, and no traceback in a body.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import ASGIApp, Message

from app.clicks import record
from app.clicks.record import Click, Flag
from app.core.keys import RedisKeys
from app.edge.session import SessionCookie
from tests.conftest import TEST_REDIS_URL
from tests.security.conftest import DESTINATION, FUZZ, Target

ALLOWED_STATUSES = {302, 404, 405, 410, 414}
COOKIE = re.compile(rb"^ct_sid=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+; Path=/; HttpOnly; SameSite=Lax$")
LOCATION_HEAD = "https://shop.example.com/item/42?ref=blog&aff_click_id="


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)

    @property
    def click_id(self) -> str:
        location = (self.header(b"location") or b"").decode()
        return parse_qs(urlsplit(location).query)["aff_click_id"][0]


async def call(
    app: ASGIApp,
    path: str,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "GET",
) -> Answer:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": query,
        "root_path": "",
        "headers": headers or [],
        "client": ("203.0.113.9", 50000),
        "server": ("testserver", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], list(start["headers"]), body)


def assert_harmless(answer: Answer) -> None:
    assert answer.status in ALLOWED_STATUSES, (answer.status, answer.body[:300])
    for name, value in answer.headers:
        assert not re.search(rb"[\r\n\x00]", name + value), (name, value)
    assert b"Traceback" not in answer.body and b"Error" not in answer.body
    if answer.status == 302:
        location = (answer.header(b"location") or b"").decode("ascii")
        assert location.startswith(LOCATION_HEAD) and location.endswith("#reviews")
        assert uuid.UUID(answer.click_id).version == 7
        assert COOKIE.match(answer.header(b"set-cookie") or b"")


async def recorded(target: Target, click_id: str) -> Click:
    """The click the redirect put in the stream (among the latest entries)."""
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    try:
        stream = RedisKeys(target.settings.key_prefix).clicks_stream
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrevrange(  # type: ignore[assignment]
            stream, count=200
        )
    finally:
        await client.aclose()
    for _, fields in entries:
        click = record.decode(fields[record.STREAM_FIELD])
        if click.click_id == click_id:
            return click
    raise AssertionError(f"click {click_id} not in the stream")


# --- Any input ---------------------------------------------------------------------------------

HOSTILE_TEXT = [
    "\r\n",
    "\x00",
    "%0d%0a",
    "%0D%0ASet-Cookie:%20x=1",
    "%00",
    "%250d%250a",
    "//evil.example",
    "javascript:alert(1)",
    "%2F%2Fevil.example",
    "https://evil.example/",
    "\\\\evil.example",
    "%FF%FE",
    "..%2F..%2F",
    "'; DROP TABLE clicks;--",
    '=HYPERLINK("http://evil.example")',
    "\u202e\u0000\ufeff",
]
names = st.sampled_from(["af", "cn", "cv", "dp", "aff_click_id", "url", "next", "a", ""])
values = st.sampled_from(HOSTILE_TEXT) | st.text(max_size=40)
pairs = st.tuples(names, values).map(lambda p: f"{p[0]}={p[1]}".encode("utf-8", "surrogatepass"))
queries = st.lists(pairs, max_size=8).map(b"&".join) | st.binary(max_size=300)
header_values = st.binary(max_size=200) | st.sampled_from(HOSTILE_TEXT).map(str.encode)
header_names = st.sampled_from(
    [b"cookie", b"user-agent", b"referer", b"accept-language", b"sec-fetch-dest", b"purpose"]
)
methods = st.sampled_from(["GET", "HEAD", "POST", "OPTIONS", "DELETE", "TRACE"])


def paths(code: str) -> st.SearchStrategy[str]:
    junk = st.sampled_from(HOSTILE_TEXT) | st.text(max_size=40)
    return st.one_of(
        st.just(f"/e/{code}"),
        junk.map(lambda j: f"/e/{code}{j}"),
        junk.map(lambda j: f"/e/{j}"),
        junk.map(lambda j: f"/e/{j}{code}"),
    )


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_any_request_gets_a_harmless_answer(target: Target, data: st.DataObject) -> None:
    answer = await call(
        target.app,
        data.draw(paths(target.link.code)),
        data.draw(queries),
        data.draw(st.lists(st.tuples(header_names, header_values), max_size=6)),
        data.draw(methods),
    )
    FUZZ["/e/ hostile requests (hypothesis, ASGI)"] += 1
    assert_harmless(answer)


# --- Named cases -------------------------------------------------------------------------------

TRACKING = ["af", "cn", "cv", "dp"]
CONTROL = [b"\r\n", b"\x00", b"%0D%0A", b"%0d%0aSet-Cookie:%20evil=1", b"%00", b"%0A", b"%7F"]


@pytest.mark.parametrize("name", TRACKING)
@pytest.mark.parametrize("bad", CONTROL)
async def test_control_characters_in_a_tracking_string_never_reach_a_header(
    target: Target, name: str, bad: bytes
) -> None:
    answer = await call(target.app, f"/e/{target.link.code}", f"{name}=a".encode() + bad + b"b")
    assert_harmless(answer)
    assert answer.status == 302
    click = await recorded(target, answer.click_id)
    assert getattr(click, name) is None and click.flags & Flag.params_invalid


@pytest.mark.parametrize("bad", CONTROL)
async def test_control_characters_elsewhere_in_the_query_are_ignored(
    target: Target, bad: bytes
) -> None:
    answer = await call(target.app, f"/e/{target.link.code}", b"utm=" + bad + b"&af=ok")
    assert_harmless(answer)
    click = await recorded(target, answer.click_id)
    assert click.af == "ok" and not click.flags & Flag.params_invalid


@pytest.mark.parametrize("bad", ["\r\n", "\x00", "\n", "%0D%0A", "%00", "\u2028"])
async def test_control_characters_in_the_code_are_a_404(target: Target, bad: str) -> None:
    for path in (f"/e/{target.link.code}{bad}", f"/e/{bad}{target.link.code}", f"/e/{bad}"):
        answer = await call(target.app, path)
        assert_harmless(answer)
        assert answer.status == 404


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        (b"af=caf%C3%A9", "caf\u00e9"),  # percent-encoded UTF-8
        (b"af=%2541", "%41"),  # double-encoded: decoded once, kept as sent
        (b"af=%250D%250A", "%0D%0A"),  # a double-encoded CR LF is text, not a line break
        (b"af=a+b%2Bc", "a b+c"),
        (b"%61f=encoded-name", "encoded-name"),
    ],
)
async def test_encoded_values_are_decoded_once(target: Target, query: bytes, stored: str) -> None:
    answer = await call(target.app, f"/e/{target.link.code}", query)
    assert_harmless(answer)
    assert (await recorded(target, answer.click_id)).af == stored


@pytest.mark.parametrize("query", [b"af=%FF", b"af=%C3%28", b"af=%ED%A0%80", b"af=\xff\xfe"])
async def test_invalid_utf8_is_dropped_and_flagged(target: Target, query: bytes) -> None:
    answer = await call(target.app, f"/e/{target.link.code}", query + b"&cn=kept")
    assert_harmless(answer)
    click = await recorded(target, answer.click_id)
    assert (click.af, click.cn) == (None, "kept") and click.flags & Flag.params_invalid


async def test_long_query_strings_get_a_414(target: Target) -> None:
    limit = target.settings.max_query_bytes
    base = b"af=first&pad="
    at_limit = base + b"x" * (limit - len(base))
    answer = await call(target.app, f"/e/{target.link.code}", at_limit)
    assert answer.status == 302
    for size in (limit + 1, 8 * 1024 + 1, 1024 * 1024):
        answer = await call(target.app, f"/e/{target.link.code}", base + b"x" * size)
        assert_harmless(answer)
        assert answer.status == 414


async def test_thousands_of_repeated_parameters(target: Target) -> None:
    query = b"af=first&" + b"af=2&" * 1200 + b"&".join([b"x"] * 1000)  # 2201 parameters
    assert len(query) <= target.settings.max_query_bytes
    answer = await call(target.app, f"/e/{target.link.code}", query)
    assert_harmless(answer)
    assert (await recorded(target, answer.click_id)).af == "first"


@pytest.mark.parametrize(
    "path",
    [
        "/e//evil.example",
        "/e/%2F%2Fevil.example",
        "/e///evil.example/",
        "/e/https://evil.example",
        "/e/javascript:alert(1)",
        "/e/JaVaScRiPt:alert(1)",
        "/e/data:text/html,<script>alert(1)</script>",
        "/e/\\\\evil.example",
        "/e/{code}/..//evil.example",
        "/e/{code}/%2e%2e/%2e%2e/evil.example",
        "/e/{code}@evil.example",
        "/e/{code}%40evil.example",
        "/e/{code}#//evil.example",
    ],
)
async def test_no_open_redirect_from_the_path(target: Target, path: str) -> None:
    answer = await call(target.app, path.format(code=target.link.code))
    assert_harmless(answer)
    assert answer.status == 404


@pytest.mark.parametrize(
    "query",
    [
        b"url=https://evil.example&next=//evil.example&redirect=javascript:alert(1)",
        b"aff_click_id=//evil.example",
        b"aff_click_id=x%0D%0ALocation:%20https://evil.example",
        b"af=//evil.example&dp=javascript:alert(1)",
    ],
)
async def test_no_open_redirect_from_the_query(target: Target, query: bytes) -> None:
    answer = await call(target.app, f"/e/{target.link.code}", query)
    assert_harmless(answer)
    assert answer.status == 302
    assert b"evil" not in (answer.header(b"location") or b"")


def _signer(secret: str) -> SessionCookie:
    return SessionCookie(secret.encode(), name="ct_sid", secure=False, domain=None, max_age=None)


async def test_forged_or_truncated_session_cookies_start_a_new_session(target: Target) -> None:
    ours = _signer(target.settings.cookie_secret.get_secret_value())
    genuine = ours.sign("genuine-session")
    session_id, _, signature = genuine.rpartition(".")
    forged = [
        genuine[:-1],
        genuine[:-10],
        session_id,
        session_id + ".",
        "." + signature,
        "attacker-chosen." + signature,
        _signer("another-secret-another-secret-0123").sign("genuine-session"),
        genuine + "A",
        genuine.replace(".", ".."),
        genuine.upper(),
        "genuine-session.\u00e9\u00e9\u00e9",
        "attacker-chosen.x; ct_sid=" + genuine,  # the first one counts, and fails
        "x" * 5000,
    ]
    for value in forged:
        header = f"ct_sid={value}".encode()
        answer = await call(target.app, f"/e/{target.link.code}", headers=[(b"cookie", header)])
        assert_harmless(answer)
        click = await recorded(target, answer.click_id)
        assert click.session_new and click.session_id not in ("genuine-session", "attacker-chosen")
    kept = await call(
        target.app, f"/e/{target.link.code}", headers=[(b"cookie", f"ct_sid={genuine}".encode())]
    )
    click = await recorded(target, kept.click_id)
    assert (click.session_new, click.session_id) == (False, "genuine-session")


@pytest.mark.parametrize(
    "value",
    [
        "'; DROP TABLE clicks;--",
        "1' OR '1'='1",
        '=HYPERLINK("https://evil.example","x")',
        "=cmd|' /C calc'!A0",
        "+1+1",
        "-2+3",
        "@SUM(A1:A9)",
        "\uff1d1+1",  # a full-width equals sign
    ],
)
async def test_sql_and_formula_values_are_recorded_verbatim(target: Target, value: str) -> None:
    query = "&".join(f"{name}={quote(value)}" for name in TRACKING).encode()
    answer = await call(target.app, f"/e/{target.link.code}", query)
    assert_harmless(answer)
    click = await recorded(target, answer.click_id)
    assert (click.af, click.cn, click.cv, click.dp) == (value, value, value, value)
    assert DESTINATION.split("#")[0] in (answer.header(b"location") or b"").decode()
