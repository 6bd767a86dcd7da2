"""The redirect on real Redis and Postgres: answers, cookies, tracking strings, the record."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager

from app.clicks import record
from app.clicks.record import Click, Flag
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.links import model as link_model
from app.links import store as link_store
from app.main import create_app
from app.settings import Settings


@pytest.fixture
async def publisher_id(pool: Pool) -> int:
    value: int = await pool.fetchval("INSERT INTO publishers (name) VALUES ('R') RETURNING id")
    return value


async def make_link(
    pool: Pool, publisher_id: int, destination: str, **fields: object
) -> link_model.Link:
    async with pool.acquire() as conn:
        link = await link_store.create_link(conn, publisher_id, destination)
        if fields:
            link = await link_store.update_link(conn, link.id, **fields)  # type: ignore[arg-type]
    return link


async def stream_clicks(redis: aioredis.Redis, settings: Settings) -> list[Click]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
        RedisKeys(settings.key_prefix).clicks_stream
    )
    return [record.decode(fields[record.STREAM_FIELD]) for _, fields in entries]


async def test_a_click_is_recorded_then_redirected(
    app_client: httpx.AsyncClient,
    pool: Pool,
    publisher_id: int,
    redis: aioredis.Redis,
    settings: Settings,
) -> None:
    link = await make_link(pool, publisher_id, "https://shop.example.com/item?id=7&ref=x#top")
    response = await app_client.get(
        f"/e/{link.code}?af=001&cn=002&cv=003&dp=abc&other=zzz",
        headers={
            "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
            "referer": "https://blog.example.org/post",
            "accept-language": "de-DE,de;q=0.9",
        },
    )
    assert response.status_code == 302
    assert response.headers["cache-control"] == "no-store"
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path) == (
        "https",
        "shop.example.com",
        "/item",
    )
    assert location.fragment == "top"
    query = parse_qs(location.query)
    assert query["id"] == ["7"] and query["ref"] == ["x"]
    click_id = uuid.UUID(query["aff_click_id"][0])
    assert click_id.version == 7
    assert response.content == b""

    [click] = await stream_clicks(redis, settings)
    assert click.click_id == str(click_id)
    assert (click.af, click.cn, click.cv, click.dp) == ("001", "002", "003", "abc")
    assert (click.link_id, click.code, click.publisher_id) == (link.id, link.code, publisher_id)
    assert click.session_new
    assert click.user_agent == "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"
    assert click.referer == "https://blog.example.org/post"
    assert click.accept_language == "de-DE,de;q=0.9"
    assert click.method == "GET"
    assert click.flags == 0
    assert click.ip == "127.0.0.1"
    now_us = datetime.now(UTC).timestamp() * 1_000_000
    assert now_us - 5_000_000 < click.ts_us <= now_us


async def test_session_cookie_flags_and_signing(
    app_client: httpx.AsyncClient,
    pool: Pool,
    publisher_id: int,
    redis: aioredis.Redis,
    settings: Settings,
) -> None:
    link = await make_link(pool, publisher_id, "https://example.com/")
    first = await app_client.get(f"/e/{link.code}", headers={"user-agent": "Mozilla/5.0"})
    cookie = first.headers["set-cookie"]
    name_value, *attributes = [part.strip() for part in cookie.split(";")]
    assert name_value.startswith("ct_sid=")
    assert set(attributes) == {"Path=/", "HttpOnly", "SameSite=Lax"}  # session cookie, no expiry
    value = name_value.removeprefix("ct_sid=")

    again = await app_client.get(
        f"/e/{link.code}",
        headers={"user-agent": "Mozilla/5.0", "cookie": f"theme=dark; ct_sid={value}; x=1"},
    )
    session_id, signature = value.rsplit(".", 1)
    forged = f"{session_id[:-1]}{'A' if session_id[-1] != 'A' else 'B'}.{signature}"
    tampered = await app_client.get(
        f"/e/{link.code}", headers={"user-agent": "Mozilla/5.0", "cookie": f"ct_sid={forged}"}
    )
    garbage = await app_client.get(
        f"/e/{link.code}", headers={"user-agent": "Mozilla/5.0", "cookie": "ct_sid=nonsense"}
    )
    assert again.status_code == tampered.status_code == garbage.status_code == 302

    first_click, again_click, tampered_click, garbage_click = await stream_clicks(redis, settings)
    assert first_click.session_new and not again_click.session_new
    assert again_click.session_id == first_click.session_id == session_id
    assert tampered_click.session_new and tampered_click.session_id != session_id
    assert garbage_click.session_new
    assert tampered.headers["set-cookie"] != cookie  # a fresh signed session replaces it


async def test_cookie_options_from_settings(
    settings: Settings, pool: Pool, publisher_id: int, redis: aioredis.Redis
) -> None:
    configured = settings.model_copy(
        update={"cookie_secure": True, "cookie_domain": "example.com", "cookie_max_age": 3600}
    )
    link = await make_link(pool, publisher_id, "https://example.com/")
    app = create_app(configured)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(manager.app), base_url="http://t") as c,
    ):
        response = await c.get(f"/e/{link.code}")
    attributes = {p.strip() for p in response.headers["set-cookie"].split(";")[1:]}
    assert attributes == {
        "Path=/",
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
        "Domain=example.com",
        "Max-Age=3600",
    }


async def test_unknown_disabled_expired_and_malformed_codes(
    app_client: httpx.AsyncClient,
    pool: Pool,
    publisher_id: int,
    redis: aioredis.Redis,
    settings: Settings,
) -> None:
    disabled = await make_link(
        pool, publisher_id, "https://example.com/d", status=link_model.LinkStatus.disabled
    )
    expired = await make_link(
        pool, publisher_id, "https://example.com/x", expires_at=datetime.now(UTC) - timedelta(1)
    )
    future = await make_link(
        pool, publisher_id, "https://example.com/f", expires_at=datetime.now(UTC) + timedelta(1)
    )
    for path in ["/e/Unknown123", f"/e/{disabled.code}", "/e/", "/e/ab-c", "/e/a/b", "/e/%00"]:
        response = await app_client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        assert "not found" in response.text.lower()
        assert "location" not in response.headers and "set-cookie" not in response.headers
    gone = await app_client.get(f"/e/{expired.code}")
    assert gone.status_code == 410 and "expired" in gone.text.lower()
    assert (await app_client.get(f"/e/{future.code}")).status_code == 302
    post = await app_client.post(f"/e/{future.code}")
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    assert len(await stream_clicks(redis, settings)) == 1  # only the redirect was recorded


async def test_disabling_a_link_stops_it_within_two_seconds(
    app_client: httpx.AsyncClient, admin_key: str, publisher_id: int
) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    created = await app_client.post(
        "/api/v1/links",
        json={"destination": "https://example.com/", "publisher_id": publisher_id},
        headers=auth,
    )
    code = created.json()["code"]
    assert (await app_client.get(f"/e/{code}")).status_code == 302  # now cached
    patched = await app_client.patch(
        f"/api/v1/links/{code}", json={"status": "disabled"}, headers=auth
    )
    assert patched.status_code == 200
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    while (await app_client.get(f"/e/{code}")).status_code != 404:
        assert loop.time() < deadline, "disabled link still redirects after 2 s"
        await asyncio.sleep(0.05)
    await app_client.patch(f"/api/v1/links/{code}", json={"status": "active"}, headers=auth)
    deadline = loop.time() + 2.0
    while (await app_client.get(f"/e/{code}")).status_code != 302:
        assert loop.time() < deadline, "re-enabled link still 404 after 2 s"
        await asyncio.sleep(0.05)


async def test_a_link_created_after_a_miss_is_found(
    app_client: httpx.AsyncClient, admin_key: str, publisher_id: int
) -> None:
    assert (await app_client.get("/e/LateCode1")).status_code == 404  # remembered as unknown
    created = await app_client.post(
        "/api/v1/links",
        json={
            "destination": "https://example.com/",
            "publisher_id": publisher_id,
            "code": "LateCode1",
        },
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert created.status_code == 201
    await asyncio.sleep(0.2)  # the change notice travels through Redis
    assert (await app_client.get("/e/LateCode1")).status_code == 302


@pytest.mark.parametrize(
    ("query", "expected", "invalid"),
    [
        ("af=1&af=2&cn=x&cn=y", ("1", "x", None, None), False),
        ("af=" + "a" * 128, ("a" * 128, None, None, None), False),
        ("af=" + "a" * 129 + "&cn=ok", (None, "ok", None, None), True),
        ("af=%E2%82%AC" * 1 + "&cv=" + "%E2%82%AC" * 128, ("€", None, "€" * 128, None), False),
        ("cv=" + "%E2%82%AC" * 129, (None, None, None, None), True),
        ("af=a%00b&cn=c", (None, "c", None, None), True),
        ("af=line%0Abreak", (None, None, None, None), True),
        ("af=del%7F", (None, None, None, None), True),
        ("af=c1%C2%85", (None, None, None, None), True),
        ("af=%FF%FE&dp=fine", (None, None, None, "fine"), True),
        ("af=%E2%82", (None, None, None, None), True),
        ("af=a+b%20c&dp=x%26y%3Dz", ("a b c", None, None, "x&y=z"), False),
        ("%61f=encoded-name", ("encoded-name", None, None, None), False),
        ("AF=upper&af_=x&xaf=y&url=https://evil.example.org", (None, None, None, None), False),
        ("af=&cn", (None, None, None, None), False),
        ("af=%zz%g", ("%zz%g", None, None, None), False),
        ("af=%bad", (None, None, None, None), True),
        ("&&&=&af=ok", ("ok", None, None, None), False),
    ],
)
async def test_tracking_strings(
    app_client: httpx.AsyncClient,
    pool: Pool,
    publisher_id: int,
    redis: aioredis.Redis,
    settings: Settings,
    query: str,
    expected: tuple[str | None, ...],
    invalid: bool,
) -> None:
    link = await make_link(pool, publisher_id, "https://example.com/landing")
    response = await app_client.get(f"/e/{link.code}?{query}", headers={"user-agent": "Mozilla"})
    assert response.status_code == 302  # a publisher's mistake never costs the end user
    assert response.headers["location"].startswith("https://example.com/landing?aff_click_id=")
    [click] = await stream_clicks(redis, settings)
    assert (click.af, click.cn, click.cv, click.dp) == expected
    assert bool(click.flags & Flag.params_invalid) == invalid


@pytest.mark.parametrize(
    ("destination", "expected_prefix", "expected_suffix"),
    [
        ("https://example.com", "https://example.com?aff_click_id=", ""),
        ("https://example.com/p", "https://example.com/p?aff_click_id=", ""),
        ("https://example.com/p?", "https://example.com/p?aff_click_id=", ""),
        ("https://example.com/p?a=1&b=", "https://example.com/p?a=1&b=&aff_click_id=", ""),
        ("https://example.com/p#f", "https://example.com/p?aff_click_id=", "#f"),
        ("https://example.com/p?a=1#f?x", "https://example.com/p?a=1&aff_click_id=", "#f?x"),
        (
            "https://example.com/p?aff_click_id=spoof&a=1",
            "https://example.com/p?a=1&aff_click_id=",
            "",
        ),
        ("https://example.com/ü?q=ä", "https://example.com/%C3%BC?q=%C3%A4&aff_click_id=", ""),
    ],
)
async def test_destination_keeps_its_query_and_gains_the_click_id(
    app_client: httpx.AsyncClient,
    pool: Pool,
    publisher_id: int,
    destination: str,
    expected_prefix: str,
    expected_suffix: str,
) -> None:
    link = await make_link(pool, publisher_id, destination)
    location = (await app_client.get(f"/e/{link.code}")).headers["location"]
    assert location.startswith(expected_prefix)
    assert location.endswith(expected_suffix)
    click_id = location[len(expected_prefix) : len(location) - len(expected_suffix)]
    assert uuid.UUID(click_id).version == 7


@pytest.mark.parametrize(
    ("method", "headers", "flags"),
    [
        ("GET", {"user-agent": "Mozilla/5.0 Chrome/130"}, Flag(0)),
        ("HEAD", {"user-agent": "Mozilla/5.0 Chrome/130"}, Flag.head),
        ("GET", {"user-agent": ""}, Flag.bot),
        ("GET", {"user-agent": "   "}, Flag.bot),
        # Known crawlers are recognised by the flusher (tests/integration/test_quality.py).
        ("GET", {"user-agent": "curl/8.5.0"}, Flag(0)),
        ("GET", {"user-agent": "Mozilla/5.0", "sec-fetch-dest": "iframe"}, Flag.iframe),
        ("GET", {"user-agent": "Mozilla/5.0", "sec-purpose": "prefetch"}, Flag.prefetch),
        ("GET", {"user-agent": "Mozilla/5.0", "purpose": "prefetch"}, Flag.prefetch),
        ("GET", {"user-agent": "Mozilla/5.0", "x-moz": "prefetch"}, Flag.prefetch),
    ],
)
async def test_request_flags_never_block_the_redirect(
    app_client: httpx.AsyncClient,
    pool: Pool,
    publisher_id: int,
    redis: aioredis.Redis,
    settings: Settings,
    method: str,
    headers: dict[str, str],
    flags: Flag,
) -> None:
    link = await make_link(pool, publisher_id, "https://example.com/")
    response = await app_client.request(method, f"/e/{link.code}", headers=headers)
    assert response.status_code == 302
    assert response.content == b""
    [click] = await stream_clicks(redis, settings)
    assert Flag(click.flags) == flags
    assert click.method == method


@pytest.mark.parametrize(
    "cookie",
    [b"ct_sid=\xc3\xa9.\xc3\xa9", b"ct_sid=" + b"A" * 5000, b"ct_sid", b"ct_sid=.", b";;;=;"],
)
async def test_hostile_cookies_start_a_new_session(
    app_client: httpx.AsyncClient,
    pool: Pool,
    publisher_id: int,
    redis: aioredis.Redis,
    settings: Settings,
    cookie: bytes,
) -> None:
    link = await make_link(pool, publisher_id, "https://example.com/")
    response = await app_client.get(f"/e/{link.code}", headers=[(b"cookie", cookie)])
    assert response.status_code == 302
    [click] = await stream_clicks(redis, settings)
    assert click.session_new
