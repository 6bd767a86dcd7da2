"""The API against wrong content types, oversized or pathological bodies, keys that are almost
right, a storm of bad keys, and destinations that try to turn links into open redirects."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.security.conftest import Target

LINKS = "/api/v1/links"


@pytest.fixture
async def client(target: Target) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=target.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def assert_json_error(response: httpx.Response, *statuses: int) -> None:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and isinstance(body["message"], str)
    assert "Traceback" not in response.text


GOOD_BODY = b'{"destination": "https://shop.example.com/p"}'


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "../../etc/passwd",
    ],
)
async def test_wrong_content_types_are_4xx(
    client: httpx.AsyncClient, target: Target, content_type: str | None
) -> None:
    headers = bearer(target.publisher_key)
    if content_type is not None:
        headers["content-type"] = content_type
    response = await client.post(LINKS, content=GOOD_BODY, headers=headers)
    assert_json_error(response, 400, 415, 422)


@pytest.mark.parametrize(
    "body",
    [
        b"{" * 20_000,
        b"[" * 30_000 + b"]" * 30_000,
        b'{"destination": "' + b"\\u0000" * 5000 + b'"}',
        b'{"destination": "https://shop.example.com/", "destination": 1}',
        b'{"destination": ' + b"9" * 20_000 + b"}",
        b'{"destination": 1e999999}',
        b'{"destination": "\xff\xfe"}',
        b"\x00" * 1000,
        b'"just a string"',
        b"null",
    ],
)
async def test_pathological_json_is_4xx(
    client: httpx.AsyncClient, target: Target, body: bytes
) -> None:
    headers = {**bearer(target.publisher_key), "content-type": "application/json"}
    response = await client.post(LINKS, content=body, headers=headers)
    assert_json_error(response, 400, 422)


@pytest.mark.parametrize("size", [64 * 1024 + 1, 2 * 1024 * 1024])
async def test_oversized_json_bodies_are_413(
    client: httpx.AsyncClient, target: Target, size: int
) -> None:
    padding = b" " * (size - len(GOOD_BODY))
    headers = {**bearer(target.publisher_key), "content-type": "application/json"}
    response = await client.post(LINKS, content=GOOD_BODY + padding, headers=headers)
    assert_json_error(response, 413)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        yield GOOD_BODY
        for _ in range(size // 8192 + 1):
            yield b" " * 8192

    response = await client.post(LINKS, content=chunks(), headers=headers)
    assert_json_error(response, 413)


def near_misses(key: str) -> list[str]:
    body = key.removeprefix("ctk_")
    flipped = body[0].swapcase() if body[0].swapcase() != body[0] else "A"
    return [
        key[:-1],
        key + "A",
        key[:-1] + ("A" if key[-1] != "A" else "B"),
        "ctk_" + flipped + body[1:],
        key.upper(),
        key.lower(),
        "ctk_",
        "ctk",
        body,
        "CTK_" + body,
        key + "\x00",
        key.replace("_", "-", 1),
        key + "x" * 200,
        "ctk_" + "\u0430" + body[1:],  # a Cyrillic a
        key[: len(key) // 2],
    ]


async def test_keys_close_to_valid_are_401(client: httpx.AsyncClient, target: Target) -> None:
    for key in (target.publisher_key, target.admin_key):
        assert (await client.get("/api/v1/me", headers=bearer(key))).status_code == 200
        for wrong in near_misses(key):
            raw = [(b"authorization", b"Bearer " + wrong.encode("utf-8"))]
            response = await client.get("/api/v1/me", headers=raw)
            assert_json_error(response, 401)
    # Whitespace around a key is the header's, not the key's (HTTP strips it too).
    padded = {"authorization": f"Bearer  {target.admin_key} \t"}
    assert (await client.get("/api/v1/me", headers=padded)).status_code == 200
    for header in [
        f"Basic {target.admin_key}",
        f"Bearer{target.admin_key}",
        f"Token {target.admin_key}",
        "Bearer",
        "Bearer ",
        "",
        f"Bearer {target.admin_key}, Bearer {target.admin_key}",
    ]:
        response = await client.get("/api/v1/me", headers={"authorization": header})
        assert_json_error(response, 401)


async def test_a_publisher_key_cannot_do_what_an_admin_key_does(
    client: httpx.AsyncClient, target: Target
) -> None:
    headers = bearer(target.publisher_key)
    assert_json_error(await client.get("/api/v1/publishers", headers=headers), 403)
    response = await client.post("/api/v1/publishers", json={"name": "x"}, headers=headers)
    assert_json_error(response, 403)


async def test_a_storm_of_bad_keys(client: httpx.AsyncClient, target: Target) -> None:
    """Two thousand requests with wrong keys, 100 at a time: every one a 401, and a
    genuine request in the middle of it still served."""
    statuses: Counter[int] = Counter()
    keys = iter([f"ctk_{n:043d}" for n in range(1000)] + [f"junk-{n}" for n in range(1000)])

    async def attacker() -> None:
        for key in keys:
            response = await client.get("/api/v1/me", headers=bearer(key))
            statuses[response.status_code] += 1

    started = time.monotonic()
    storm = [asyncio.create_task(attacker()) for _ in range(100)]
    await asyncio.sleep(0.05)
    genuine = await client.get("/api/v1/me", headers=bearer(target.publisher_key))
    genuine_s = time.monotonic() - started
    await asyncio.gather(*storm)
    assert genuine.status_code == 200
    assert statuses == Counter({401: 2000})
    assert genuine_s < 10, f"a genuine request waited {genuine_s:.1f}s"


@pytest.mark.parametrize(
    "destination",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)//https://shop.example.com/",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/",
        "///evil.example/",
        "https:evil.example",
        "https:/evil.example",
        "https://evil.example/",
        "https://evil.example#.example.com",
        "https://evil.example?.example.com",
        "https://evil.example\\.example.com",
        "https://shop.example.com@evil.example/",
        "https://shop.example.com:443@evil.example/",
        "https://shop.example.com%2F@evil.example/",
        "https://shop.example.com.evil.example/",
        "https://example.com.evil.example/",
        "https://evilexample.com/",
        "https://shop.example.com\r\nLocation: https://evil.example/",
        "https://shop.example.com/\x00",
        "https://shop.example.com /",
        "ftp://shop.example.com/",
        "https://[::1]/",
        "https://127.0.0.1/",
        "https://shop.example.com:99999/",
        "https://xn--exmple-cua.com/",  # exämple.com
        "https://\u0435xample.com/",  # a Cyrillic e
        "https://shop.example.com" + "/a" * 2000,
    ],
)
async def test_links_cannot_point_off_the_allowed_hosts(
    client: httpx.AsyncClient, target: Target, destination: str
) -> None:
    response = await client.post(
        LINKS, json={"destination": destination}, headers=bearer(target.publisher_key)
    )
    assert_json_error(response, 422)


HUGE = 2**63  # one past the largest id Postgres stores


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", f"/api/v1/publishers/{HUGE}", None),
        ("GET", f"/api/v1/publishers/{-HUGE - 1}", None),
        ("GET", f"/api/v1/publishers?after={HUGE * 10**6}", None),
        ("POST", f"/api/v1/publishers/{HUGE}/api-keys", {}),
        ("POST", "/api/v1/publishers", {"name": "n", "kind": "publisher", "network_id": HUGE}),
        ("GET", f"/api/v1/links?publisher_id={HUGE}", None),
        ("POST", LINKS, {"destination": "https://shop.example.com/", "publisher_id": HUGE}),
    ],
)
async def test_ids_past_what_postgres_stores_are_422(
    client: httpx.AsyncClient, target: Target, method: str, url: str, body: object
) -> None:
    """Found by the schemathesis run: such an id passed validation and made a 500."""
    response = await client.request(method, url, json=body, headers=bearer(target.admin_key))
    assert_json_error(response, 404, 422)


async def test_nul_in_any_text_is_a_422_not_a_500(
    app_client: httpx.AsyncClient, admin_key: str
) -> None:
    response = await app_client.post(
        "/api/v1/publishers",
        json={"name": "bad\u0000name"},
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "invalid"
