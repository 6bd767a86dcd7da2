"""Managing links through the API, on real Postgres and Redis, with the real redirect: a new
destination, archive and restore, list filters, tracking URLs and their QR codes, and the
audit entries every change writes."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis

from app.core.db import Pool
from app.core.keys import RedisKeys
from app.edge.params import parse_tracking
from app.flusher.loop import Flusher
from app.settings import Settings
from tests.support.accounts import bearer
from tests.support.reports import quiet
from tests.support.zones import local_today

BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
LINKS = "/api/v1/links"


def new_code() -> str:
    return "M" + uuid.uuid4().hex[:12]


async def new_publisher_key(client: httpx.AsyncClient, admin_key: str) -> tuple[int, str]:
    created = await client.post(
        "/api/v1/publishers", json={"name": "Manage test"}, headers=bearer(admin_key)
    )
    assert created.status_code == 201, created.text
    publisher_id: int = created.json()["id"]
    key = await client.post(
        f"/api/v1/publishers/{publisher_id}/api-keys", json={}, headers=bearer(admin_key)
    )
    assert key.status_code == 201, key.text
    return publisher_id, key.json()["key"]


@pytest.fixture
async def publisher(app_client: httpx.AsyncClient, admin_key: str) -> tuple[int, str]:
    return await new_publisher_key(app_client, admin_key)


async def create(
    client: httpx.AsyncClient, key: str, destination: str, code: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"destination": destination}
    if code is not None:
        body["code"] = code
    created = await client.post(LINKS, json=body, headers=bearer(key))
    assert created.status_code == 201, created.text
    link: dict[str, Any] = created.json()
    return link


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 2.0) -> None:
    """Wait until ``check`` holds: a change reaches the redirect's cache by a notice."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.05)


async def follow(client: httpx.AsyncClient, code: str) -> httpx.Response:
    return await client.get(f"/e/{code}", headers={"user-agent": BROWSER})


async def audit_entries(pool: Pool, code: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT action, actor, publisher_id, before, after FROM audit_log
           WHERE target_kind = 'link' AND target_id = $1 ORDER BY id""",
        code,
    )
    return [dict(r) for r in rows]


async def test_a_new_destination_is_where_the_next_click_goes(
    app_client: httpx.AsyncClient, publisher: tuple[int, str], pool: Pool
) -> None:
    publisher_id, key = publisher
    code = new_code()
    await create(app_client, key, "https://shop.example.com/old", code)
    first = await follow(app_client, code)
    assert first.status_code == 302
    assert first.headers["location"].startswith("https://shop.example.com/old?")

    patched = await app_client.patch(
        f"{LINKS}/{code}",
        json={"destination": "https://BÜCHER.example.com/new/päth"},
        headers=bearer(key),
    )
    assert patched.status_code == 200, patched.text
    # normalised as on creation: IDNA host, percent-encoded path
    new = "https://xn--bcher-kva.example.com/new/p%C3%A4th"
    assert patched.json()["destination"] == new

    async def moved() -> bool:
        location: str = (await follow(app_client, code)).headers.get("location", "")
        return location.startswith(new)

    await eventually(moved, "the redirect still goes to the old destination after 2 s")

    entries = await audit_entries(pool, code)
    assert [e["action"] for e in entries] == ["link.create", "link.update"]
    assert all(e["publisher_id"] == publisher_id for e in entries)
    assert entries[0]["before"] is None
    update = entries[1]
    assert json.loads(update["before"]) == {
        "destination": "https://shop.example.com/old",
        "status": "active",
        "expires_at": None,
        "rules": [],
    }
    assert json.loads(update["after"]) == {
        "destination": new,
        "status": "active",
        "expires_at": None,
        "rules": [],
    }


async def test_a_bad_destination_is_refused_in_plain_words(
    app_client: httpx.AsyncClient, publisher: tuple[int, str], pool: Pool
) -> None:
    _, key = publisher
    code = new_code()
    await create(app_client, key, "https://shop.example.com/a", code)
    for destination, words in [
        ("https://elsewhere.example.org/", "not allowed"),
        ("ftp://shop.example.com/", "http or https"),
        (None, "cannot be null"),
    ]:
        refused = await app_client.patch(
            f"{LINKS}/{code}", json={"destination": destination}, headers=bearer(key)
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "invalid"
        assert words in refused.json()["message"]
    still = await app_client.get(f"{LINKS}/{code}", headers=bearer(key))
    assert still.json()["destination"] == "https://shop.example.com/a"
    # a refused change leaves no audit entry
    assert [e["action"] for e in await audit_entries(pool, code)] == ["link.create"]


async def run_flusher(settings: Settings, redis: aioredis.Redis, pool: Pool) -> None:
    flusher = Flusher(
        quiet(settings, settings.database_url), redis, pool, consumer=f"m-{uuid.uuid4().hex[:6]}"
    )
    while await flusher.run_once():
        pass


async def test_archive_answers_gone_keeps_history_and_restores(
    app_client: httpx.AsyncClient,
    publisher: tuple[int, str],
    pool: Pool,
    redis: aioredis.Redis,
    settings: Settings,
) -> None:
    _, key = publisher
    code = new_code()
    await create(app_client, key, "https://shop.example.com/arch", code)
    assert (await follow(app_client, code)).status_code == 302
    await run_flusher(settings, redis, pool)

    archived = await app_client.patch(
        f"{LINKS}/{code}", json={"status": "archived"}, headers=bearer(key)
    )
    assert archived.status_code == 200, archived.text
    assert archived.json()["status"] == "archived"

    async def gone() -> bool:
        return (await follow(app_client, code)).status_code == 410

    await eventually(gone, "an archived link still redirects after 2 s")
    page = await follow(app_client, code)
    assert "expired" in page.text.lower()  # the expired link's page
    assert "location" not in page.headers and "set-cookie" not in page.headers

    # hidden from the default list, shown when asked for; still readable by its code
    default = await app_client.get(LINKS, headers=bearer(key))
    assert code not in [link["code"] for link in default.json()["items"]]
    asked = await app_client.get(LINKS, params={"status": "archived"}, headers=bearer(key))
    assert [link["code"] for link in asked.json()["items"]] == [code]
    assert (await app_client.get(f"{LINKS}/{code}", headers=bearer(key))).status_code == 200

    # its clicks are still in the traffic report
    report = await app_client.get(
        "/api/v1/reports/traffic", params={"group_by": "link"}, headers=bearer(key)
    )
    assert report.status_code == 200, report.text
    rows = {row["link"]: row["clicks"] for row in report.json()["rows"]}
    assert rows == {code: 1}

    restored = await app_client.patch(
        f"{LINKS}/{code}", json={"status": "active"}, headers=bearer(key)
    )
    assert restored.json()["status"] == "active"

    async def back() -> bool:
        return (await follow(app_client, code)).status_code == 302

    await eventually(back, "a restored link still answers 410 after 2 s")
    actions = [e["action"] for e in await audit_entries(pool, code)]
    assert actions == ["link.create", "link.update", "link.update"]


async def test_an_archived_link_read_from_postgres_is_gone(
    app_client: httpx.AsyncClient,
    publisher: tuple[int, str],
    pool: Pool,
    redis: aioredis.Redis,
    settings: Settings,
) -> None:
    """Archived with no copy in Redis (expired, or lost): the read-through from Postgres
    (``mirror.load_from_postgres``) says gone as well."""
    _, key = publisher
    code = new_code()
    await create(app_client, key, "https://shop.example.com/cold", code)
    await pool.execute("UPDATE links SET status = 'archived' WHERE code = $1", code)
    await redis.delete(RedisKeys(settings.key_prefix).link(code))
    assert (await follow(app_client, code)).status_code == 410


async def test_list_filters(
    app_client: httpx.AsyncClient, publisher: tuple[int, str], settings: Settings
) -> None:
    _, key = publisher
    tag = uuid.uuid4().hex[:6]
    shoe = await create(app_client, key, f"https://shop.example.com/shoes/{tag}")
    bag = await create(app_client, key, f"https://shop.example.net/Bags/{tag}")
    off = await create(app_client, key, "https://example.com/")
    await app_client.patch(
        f"{LINKS}/{off['code']}", json={"status": "disabled"}, headers=bearer(key)
    )

    async def codes(**params: Any) -> list[str]:
        listed = await app_client.get(LINKS, params=params, headers=bearer(key))
        assert listed.status_code == 200, listed.text
        return [link["code"] for link in listed.json()["items"]]

    assert await codes() == [shoe["code"], bag["code"], off["code"]]
    assert await codes(status="disabled") == [off["code"]]
    assert await codes(status="active") == [shoe["code"], bag["code"]]
    assert await codes(q="BAGS") == [bag["code"]]  # any case, in the destination
    assert await codes(q=shoe["code"].lower()) == [shoe["code"]]  # in the code
    assert await codes(host="shop.example.net") == [bag["code"]]
    assert await codes(host="SHOP.EXAMPLE.COM.") == [shoe["code"]]  # normal form
    today = local_today(settings.period_tz)
    assert len(await codes(created_from=today.isoformat(), created_to=today.isoformat())) == 3
    assert await codes(created_to=(today - timedelta(days=1)).isoformat()) == []
    assert await codes(created_from=(today + timedelta(days=1)).isoformat()) == []
    # days no link can have been created on bound nothing (and overflow nothing)
    assert len(await codes(created_from="0001-01-01", created_to="9999-12-31")) == 3
    # the cursor pages through the filtered list
    first = await app_client.get(
        LINKS, params={"limit": 1, "status": "active"}, headers=bearer(key)
    )
    after = first.json()["next_after"]
    assert after is not None
    assert await codes(limit=1, status="active", after=after) == [bag["code"]]

    for params, field in [
        ({"status": "gone"}, "status"),
        ({"q": "x" * 101}, "q"),
        ({"q": "a\u200bb"}, "q"),
        ({"host": "bad host"}, "host"),
        ({"created_from": "2026-13-01"}, "created_from"),
        ({"created_from": "2026-02-02", "created_to": "2026-02-01"}, "created_to"),
    ]:
        refused = await app_client.get(LINKS, params=params, headers=bearer(key))
        assert refused.status_code == 422, (params, refused.text)
        assert field in refused.json()["message"], refused.text


async def test_tracking_url_and_qr_codes(
    app_client: httpx.AsyncClient, publisher: tuple[int, str], admin_key: str
) -> None:
    _, key = publisher
    code = new_code()
    link = await create(app_client, key, "https://shop.example.com/qr", code)
    params = {"af": "001", "cn": "spring sale", "dp": "a&b=ü"}
    answer = await app_client.get(
        f"{LINKS}/{code}/tracking-url", params=params, headers=bearer(key)
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["url"].startswith(link["short_url"] + "?af=001&cn=spring%20sale&dp=")
    parsed = parse_tracking(urlsplit(body["url"]).query.encode())
    assert (parsed.af, parsed.cn, parsed.cv, parsed.dp) == ("001", "spring sale", None, "a&b=ü")

    # the QR links carry the same query and answer with the images
    svg_url, png_url = urlsplit(body["qr_svg_url"]), urlsplit(body["qr_png_url"])
    assert svg_url.path == f"{LINKS}/{code}/qr.svg"
    assert png_url.path == f"{LINKS}/{code}/qr.png"
    assert svg_url.query == png_url.query == urlsplit(body["url"]).query
    svg = await app_client.get(f"{svg_url.path}?{svg_url.query}", headers=bearer(key))
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert ET.fromstring(svg.content).tag == "{http://www.w3.org/2000/svg}svg"
    sizes = []
    for size in (2, 8):
        png = await app_client.get(
            f"{png_url.path}?{png_url.query}&size={size}", headers=bearer(key)
        )
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png.content[16:24])
        assert width == height
        sizes.append(width)
    assert sizes[1] == sizes[0] * 4

    # an admin sees it too; another publisher gets 404 as for a missing link
    assert (
        await app_client.get(f"{LINKS}/{code}/tracking-url", headers=bearer(admin_key))
    ).status_code == 200
    _, other = await new_publisher_key(app_client, admin_key)
    for path in ("tracking-url", "qr.svg", "qr.png"):
        hidden = await app_client.get(f"{LINKS}/{code}/{path}", headers=bearer(other))
        assert hidden.status_code == 404 and hidden.json()["error"] == "not_found"

    for bad, field in [
        ({"af": "x" * 129}, "af"),
        ({"cv": "a\u202eb"}, "cv"),
        ({"size": "0"}, "size"),
        ({"size": "41"}, "size"),
    ]:
        path = "qr.png" if "size" in bad else "tracking-url"
        refused = await app_client.get(f"{LINKS}/{code}/{path}", params=bad, headers=bearer(key))
        assert refused.status_code == 422, refused.text
        assert field in refused.json()["message"], refused.text
