"""Links' URLs end to end on real Redis and Postgres: near-miss paths follow the link once,
destinations are stored and sent as pure ASCII (IDNA hosts), the allow-list compares that
form, and the click-id parameter is replaced whatever its spelling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from app.core.db import Pool, create_pool
from app.core.keys import RedisKeys
from app.links import store as link_store
from app.links.urls import MAX_DESTINATION_BYTES
from app.settings import Settings
from tests.conftest import migrated_database
from tests.integration.test_api import assert_error, bearer, new_publisher, new_publisher_key
from tests.integration.test_cli import run_cli
from tests.integration.test_redirect import stream_clicks

BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # One allowed host written in Unicode, one in punycode: each must match the other form.
    return settings.model_copy(
        update={
            "allowed_hosts": (
                *settings.allowed_hosts,
                *Settings(
                    allowed_hosts="bücher.example.com,xn--mnchen-3ya.example.org"
                ).allowed_hosts,
            )
        }
    )


@pytest.fixture
async def issue_link(pool: Pool) -> AsyncIterator[None]:
    """The issue's link, ``abcD12345``, removed afterwards. Another test of the session may
    have used the code: that link is given another."""
    await pool.execute("UPDATE links SET code = 'x' || id WHERE code = 'abcD12345'")
    publisher_id = await pool.fetchval("INSERT INTO publishers (name) VALUES ('N') RETURNING id")
    async with pool.acquire() as conn:
        await link_store.create_link(
            conn, publisher_id, "https://shop.example.com/p", code="abcD12345"
        )
    yield
    await pool.execute("DELETE FROM links WHERE code = 'abcD12345'")


@pytest.fixture
async def publisher_key(app_client: httpx.AsyncClient, admin_key: str) -> str:
    publisher_id = await new_publisher(app_client, admin_key)
    return await new_publisher_key(app_client, admin_key, publisher_id)


async def create(client: httpx.AsyncClient, key: str, destination: str) -> httpx.Response:
    return await client.post(
        "/api/v1/links", json={"destination": destination}, headers=bearer(key)
    )


@pytest.mark.parametrize(
    "path",
    [
        "/e/abcD12345/?af=001",  # the issue's two inputs
        "/e/abcD12345.?af=001",
        "/e/abcD12345,?af=001",
        "/e/abcD12345)?af=001",
        "/e/abcD12345!?af=001",
        "/e/abcD12345;?af=001",
        "/e/abcD12345//?af=001",
        "/e/abcD12345).?af=001",
        "/e/abcD12345%E2%80%A6?af=001",  # "…" after a link pasted into prose
        "/e/abcD12345%E3%80%82?af=001",  # the ideographic full stop
        "/e/abcD12345%22?af=001",  # a closing quote
        "/e/abcD12345%3E?af=001",  # the ">" of "<https://...>"
    ],
)
@pytest.mark.usefixtures("issue_link")
async def test_near_miss_paths_follow_the_link_and_record_the_click_once(
    app_client: httpx.AsyncClient, redis: aioredis.Redis, settings: Settings, path: str
) -> None:
    response = await app_client.get(path, headers=BROWSER)
    assert response.status_code == 302, response.text
    assert response.headers["location"].startswith("https://shop.example.com/p?aff_click_id=")
    [click] = await stream_clicks(redis, settings)
    assert (click.code, click.af) == ("abcD12345", "001")


@pytest.mark.usefixtures("issue_link")
async def test_tails_that_hold_letters_or_digits_name_no_link(
    app_client: httpx.AsyncClient, redis: aioredis.Redis, settings: Settings
) -> None:
    for path in ["/e/abcD12345/x", "/e/abcD12345.html", "/e/abcD12345%C3%A9", "/e/.abcD12345"]:
        assert (await app_client.get(path)).status_code == 404, path
    assert await stream_clicks(redis, settings) == []


async def test_a_unicode_host_is_stored_and_sent_as_idna(
    app_client: httpx.AsyncClient, publisher_key: str, redis: aioredis.Redis, settings: Settings
) -> None:
    created = await create(app_client, publisher_key, "https://bücher.example.com/x?y=ü")
    assert created.status_code == 201, created.text
    link: dict[str, Any] = created.json()
    assert link["destination"] == "https://xn--bcher-kva.example.com/x?y=%C3%BC"
    response = await app_client.get(f"/e/{link['code']}", headers=BROWSER)
    location = response.headers["location"]
    assert location.startswith("https://xn--bcher-kva.example.com/x?y=%C3%BC&aff_click_id=")
    assert location.isascii()


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("https://BÜCHER.example.com/", "https://xn--bcher-kva.example.com/"),
        ("https://xn--bcher-kva.example.com/", "https://xn--bcher-kva.example.com/"),
        ("https://b%C3%BCcher.example.com/", "https://xn--bcher-kva.example.com/"),
        ("https://münchen.example.org/a", "https://xn--mnchen-3ya.example.org/a"),
        # Full-width letters, mapped by UTS #46.
        (
            "https://shop.\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com/",
            "https://shop.example.com/",
        ),
        ("HTTPS://Shop.Example.COM:443", "https://shop.example.com/"),
        ("https://shop.example.com./a%20b", "https://shop.example.com/a%20b"),
        (
            'https://shop.example.com/p?q="<x>"#a#b',
            "https://shop.example.com/p?q=%22%3Cx%3E%22#a%23b",
        ),
    ],
)
async def test_the_allow_list_compares_hosts_in_one_form(
    app_client: httpx.AsyncClient, publisher_key: str, written: str, stored: str
) -> None:
    created = await create(app_client, publisher_key, written)
    assert created.status_code == 201, created.text
    assert created.json()["destination"] == stored


@pytest.mark.parametrize(
    "destination",
    [
        "https://a%2Fb.example.com/",  # a host that can never resolve
        "https://shop%2Eexample%2Ecom%2F.evil.example/",
        "https://a%00b.example.com/",
        "https://a..b.example.com/",
        "https://-a.example.com/",
        "https://1.2.3/",  # a last label of digits: WHATWG clients read an IPv4 address
        "https://example.0x7f/",
        "https://[fe80::1%25eth0]/",
        "https://shop.example.com:0/",
        "https://bücher.example.net/",  # a host not on the list in either form
        "https://shop.example.com/" + "é" * 1100,  # 2,200 bytes once encoded
    ],
)
async def test_impossible_and_unlisted_hosts_are_refused_in_plain_words(
    app_client: httpx.AsyncClient, publisher_key: str, destination: str
) -> None:
    body = assert_error(await create(app_client, publisher_key, destination), 422, "invalid")
    assert "destination" in body["message"]


async def test_destinations_are_bounded_in_bytes_as_stored_and_as_sent(
    app_client: httpx.AsyncClient, publisher_key: str
) -> None:
    head = "https://shop.example.com/?q="
    fits = head + "a" * (MAX_DESTINATION_BYTES - len(head))
    created = await create(app_client, publisher_key, fits)
    assert created.status_code == 201, created.text
    location = (await app_client.get(f"/e/{created.json()['code']}")).headers["location"]
    assert location.isascii() and len(location.encode()) <= MAX_DESTINATION_BYTES + 64 + 38
    over = await create(app_client, publisher_key, fits + "a")
    assert_error(over, 422, "invalid")


@pytest.mark.parametrize(
    "existing",
    ["aff_click_id=old", "aff%5Fclick%5Fid=old", "%61ff_click_id=old", "aff_click%5fid"],
)
async def test_the_click_id_replaces_the_destinations_own_whatever_its_spelling(
    app_client: httpx.AsyncClient, publisher_key: str, existing: str
) -> None:
    created = await create(app_client, publisher_key, f"https://shop.example.com/?a=1&{existing}")
    assert created.status_code == 201, created.text
    location = (await app_client.get(f"/e/{created.json()['code']}")).headers["location"]
    query = location.partition("?")[2]
    assert query.startswith("a=1&aff_click_id=") and query.count("&") == 1, query


async def test_check_links_finds_and_rewrites_what_an_older_release_stored(
    key_prefix: str, redis: aioredis.Redis
) -> None:
    """Links written before destinations were normalised: ``check-links`` lists them,
    ``--fix`` rewrites those it can (announced to the redirect), never the refused ones."""
    legacy = {
        "unicode1": "https://bücher.example.com/x?y=ü",
        "normal1": "https://shop.example.com/ok",
        "slash1": "https://a%2Fb.example.com/x",
        "long1": "https://shop.example.com/" + "ü" * 600,
    }
    async with migrated_database("ct_recheck") as database_url:
        pool = await create_pool(database_url, max_size=2)
        try:
            publisher_id = await pool.fetchval(
                "INSERT INTO publishers (name) VALUES ('Old') RETURNING id"
            )
            async with pool.acquire() as conn:
                for code, destination in legacy.items():
                    await link_store.create_link(conn, publisher_id, destination, code=code)
            env = {"CLICKTRACK_KEY_PREFIX": key_prefix}
            listed = run_cli(database_url, "check-links", env=env)
            assert listed.returncode == 1 and "2 links cannot be sent" in listed.stderr
            assert "4 links checked: 1 not in normal form, 2 refused" in listed.stdout
            assert "slash1" in listed.stdout and "long1" in listed.stdout
            assert (
                await pool.fetchval("SELECT destination FROM links WHERE code = 'unicode1'")
                == legacy["unicode1"]
            )

            fixed = run_cli(database_url, "check-links", "--fix", env=env)
            assert fixed.returncode == 1, fixed.stderr
            rows = await pool.fetch("SELECT code, destination FROM links")
            stored = {row["code"]: row["destination"] for row in rows}
            assert stored == {
                **legacy,
                "unicode1": "https://xn--bcher-kva.example.com/x?y=%C3%BC",
            }
            assert await redis.exists(RedisKeys(key_prefix).link("unicode1"))
            again = run_cli(database_url, "check-links", env=env)
            assert "4 links checked: 0 not in normal form, 2 refused" in again.stdout
        finally:
            await pool.close()
