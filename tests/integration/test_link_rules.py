"""A link's rules (issue 19) end to end on real Redis and Postgres: rules written through the
API, a scripted mix of requests with real user agents from addresses whose country the
registries' data knows, each Location, and the rule each stored click records. Also: a rule
change reaches the next redirect (mirror publish), bad rules are refused in words with
nothing stored, the trusted proxy's country header is believed from a trusted peer only, and
the privacy modes keep the country the rules judged."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

from app.core.db import Pool
from app.edge.proxy import behind_proxies
from app.flusher.loop import Flusher
from app.main import create_app
from app.settings import IpMode, Settings
from bench.services import RULES_CODE_PREFIX, seed_links, seed_rule_links
from tests.conftest import TEST_REDIS_URL
from tests.integration.test_links_manage import audit_entries, eventually, new_publisher_key
from tests.support.accounts import bearer
from tests.unit.test_dimensions_agent import CASES

LINKS = "/api/v1/links"
HOME = "https://shop.example.com/home"
A, B, C = "https://shop.example.com/de", "https://m.example.com/", "https://news.example.com/"
THREE = [
    {"when": "country", "in": ["DE"], "destination": A},
    {"when": "device", "in": ["mobile"], "destination": B},
    {"when": "param", "name": "utm_source", "in": ["news"], "destination": C},
]
GERMAN = "81.91.161.1"  # DENIC's network, Frankfurt: DE in the registries' data
GERMAN_V6 = "2a00:1158::1"  # DENIC's IPv6 block: DE
DUTCH = "193.0.6.139"  # RIPE NCC, Amsterdam: NL
PROXY = "10.0.0.1"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Visitors share addresses here: no quality rule in the way."""
    return settings.model_copy(update={"duplicate_window_s": 0, "ip_clicks_per_minute": 0})


@asynccontextmanager
async def running(settings: Settings, pool: Pool) -> AsyncIterator[ASGIApp]:
    """The app as served (behind the trusted proxies, if any) and a flusher."""
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    stop = asyncio.Event()
    consumer = f"r-{uuid.uuid4().hex[:6]}"
    flusher = asyncio.create_task(Flusher(settings, redis, pool, consumer=consumer).run(stop))
    app = behind_proxies(create_app(settings), settings.forwarded_allow_ips)
    try:
        async with LifespanManager(app) as manager:
            yield manager.app
    finally:
        stop.set()
        await flusher
        await redis.aclose()


@asynccontextmanager
async def peer(app: ASGIApp, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose TCP peer address is ``address``, with a cookie jar of its own."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def new_link(app: ASGIApp, admin_key: str, rules: list[dict[str, Any]]) -> str:
    async with peer(app, "127.0.0.1") as api:
        _, key = await new_publisher_key(api, admin_key)
        created = await api.post(
            LINKS, json={"destination": HOME, "rules": rules}, headers=bearer(key)
        )
    assert created.status_code == 201, created.text
    assert created.json()["rules"] == rules
    code: str = created.json()["code"]
    return code


async def follow(
    app: ASGIApp, code: str, address: str, agent: str, query: str = "", **headers: str
) -> tuple[str, str]:
    """(the Location without its click id, the click id) of one request."""
    async with peer(app, address) as browser:
        answer = await browser.get(
            f"/e/{code}{query}", headers={"user-agent": CASES[agent][0], **headers}
        )
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    parts = urlsplit(location)
    [click_id] = parse_qs(parts.query)["aff_click_id"]
    assert location.endswith(f"aff_click_id={click_id}")
    return location.removesuffix(f"aff_click_id={click_id}"), click_id


async def stored(pool: Pool, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """rule, country, ip of each click, once the flusher stored them all."""
    for _ in range(300):
        rows = await pool.fetch(
            "SELECT click_id::text AS id, rule, country, ip FROM clicks "
            "WHERE click_id::text = ANY($1)",
            list(ids),
        )
        if len(rows) == len(ids):
            return {row["id"]: dict(row) for row in rows}
        await asyncio.sleep(0.1)
    raise AssertionError("the flusher did not store every click")


# (user agent, client address, query) -> (destination, rule): the first rule that matches.
MIX = [
    ("iPhone Safari", DUTCH, "", B, 2),
    ("Pixel Chrome", DUTCH, "", B, 2),
    ("iPad Safari", DUTCH, "", HOME, None),
    ("Windows Chrome", GERMAN, "", A, 1),
    ("iPhone Safari", GERMAN, "", A, 1),
    ("Windows Chrome", GERMAN_V6, "?utm_source=news", A, 1),
    ("macOS Safari", DUTCH, "?utm_source=news&af=7", C, 3),
    ("iPad Safari", DUTCH, "?utm_source=&utm_source=news", C, 3),
    ("Windows Chrome", DUTCH, "?utm_source=mail", HOME, None),
    ("Googlebot", DUTCH, "", HOME, None),
    ("Googlebot", GERMAN, "", A, 1),
]


async def test_a_scripted_mix_goes_where_its_first_matching_rule_says(
    settings: Settings, pool: Pool, admin_key: str
) -> None:
    ids = []
    async with running(settings, pool) as app:
        code = await new_link(app, admin_key, THREE)
        for agent, address, query, destination, _ in MIX:
            location, click_id = await follow(app, code, address, agent, query)
            expected = destination + ("&" if "?" in destination else "?")
            assert location == expected, (agent, address, query)
            ids.append(click_id)
        rows = await stored(pool, ids)
    for click_id, (agent, address, query, _, rule) in zip(ids, MIX, strict=True):
        assert rows[click_id]["rule"] == rule, (agent, address, query)
        assert rows[click_id]["ip"] == address  # full mode
    assert {rows[i]["country"] for i, m in zip(ids, MIX, strict=True) if m[1] != DUTCH} == {"DE"}


async def test_a_rule_change_reaches_the_next_redirect(
    settings: Settings, pool: Pool, admin_key: str
) -> None:
    async with running(settings, pool) as app:
        code = await new_link(app, admin_key, [])
        assert (await follow(app, code, GERMAN, "Windows Chrome"))[0] == HOME + "?"
        async with peer(app, "127.0.0.1") as api:
            owner = await api.get(f"{LINKS}/{code}", headers=bearer(admin_key))
            assert owner.json()["rules"] == []
            patched = await api.patch(
                f"{LINKS}/{code}", json={"rules": THREE[:1]}, headers=bearer(admin_key)
            )
            assert patched.status_code == 200, patched.text
            assert patched.json()["rules"] == THREE[:1]
            shown = await api.get(f"{LINKS}/{code}", headers=bearer(admin_key))
            assert shown.json()["rules"] == THREE[:1]

        async def obeyed() -> bool:
            return (await follow(app, code, GERMAN, "Windows Chrome"))[0] == A + "?"

        await eventually(obeyed, "the redirect ignores the new rule after 2 s")
        async with peer(app, "127.0.0.1") as api:
            cleared = await api.patch(
                f"{LINKS}/{code}", json={"rules": []}, headers=bearer(admin_key)
            )
            assert cleared.json()["rules"] == []

        async def dropped() -> bool:
            return (await follow(app, code, GERMAN, "Windows Chrome"))[0] == HOME + "?"

        await eventually(dropped, "the redirect still obeys a removed rule after 2 s")
    entries = await audit_entries(pool, code)
    assert [e["action"] for e in entries] == ["link.create", "link.update", "link.update"]
    assert json.loads(entries[0]["after"])["rules"] == []
    assert json.loads(entries[1]["before"])["rules"] == []
    assert json.loads(entries[1]["after"])["rules"] == THREE[:1]
    assert json.loads(entries[2]["after"])["rules"] == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{**THREE[0], "in": ["DEU"]}], 'rules[0].in[0]: "DEU" is not a two-letter country code'),
        ([THREE[1], {**THREE[0], "destination": "https://evil.test/"}], "rules[1].destination"),
        ([{**THREE[1], "when": "browser"}], 'rules[0].when: "browser" is not known'),
        ([THREE[0]] * 11, "rules: at most 10 rules per link"),
        ({"when": "country"}, "rules: must be a list of rules"),
        (None, "rules: cannot be null"),
    ],
)
async def test_bad_rules_are_refused_in_words_and_nothing_is_stored(
    app_client: httpx.AsyncClient, admin_key: str, pool: Pool, rules: object, message: str
) -> None:
    _, key = await new_publisher_key(app_client, admin_key)
    created = await app_client.post(
        LINKS, json={"destination": HOME, "rules": THREE}, headers=bearer(key)
    )
    code = created.json()["code"]
    refused = await app_client.patch(f"{LINKS}/{code}", json={"rules": rules}, headers=bearer(key))
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "invalid"
    assert refused.json()["message"].startswith(message)
    assert (await app_client.get(f"{LINKS}/{code}", headers=bearer(key))).json()["rules"] == THREE
    assert [e["action"] for e in await audit_entries(pool, code)] == ["link.create"]
    if rules is not None:
        new = await app_client.post(
            LINKS, json={"destination": HOME, "rules": rules}, headers=bearer(key)
        )
        assert new.status_code == 422 and new.json()["message"].startswith(message)
    listed = await app_client.get(LINKS, headers=bearer(key))
    assert [link["code"] for link in listed.json()["items"]] == [code]


async def test_the_country_header_is_believed_from_a_trusted_proxy_only(
    settings: Settings, pool: Pool, admin_key: str
) -> None:
    settings = settings.model_copy(
        update={"country_header": "CF-IPCountry", "forwarded_allow_ips": PROXY}
    )
    via_proxy = {"x-forwarded-for": DUTCH, "cf-ipcountry": "de"}
    async with running(settings, pool) as app:
        code = await new_link(app, admin_key, THREE[:1])
        trusted = await follow(app, code, PROXY, "Windows Chrome", **via_proxy)
        # The header of a peer that is no trusted proxy is its own text: ignored, and so is
        # its X-Forwarded-For.
        untrusted = await follow(app, code, DUTCH, "Windows Chrome", **via_proxy)
        unknown = await follow(
            app, code, PROXY, "Windows Chrome", **via_proxy | {"cf-ipcountry": "XX"}
        )
        germany = await follow(app, code, PROXY, "Windows Chrome", **{"x-forwarded-for": GERMAN})
        rows = await stored(pool, [trusted[1], untrusted[1], unknown[1], germany[1]])
    assert trusted[0] == A + "?"
    assert rows[trusted[1]] == {"id": trusted[1], "rule": 1, "country": "DE", "ip": DUTCH}
    assert untrusted[0] == HOME + "?"
    assert rows[untrusted[1]] == {"id": untrusted[1], "rule": None, "country": "NL", "ip": DUTCH}
    # XX is "unknown": the forwarded address's country is used
    assert unknown[0] == HOME + "?"
    assert rows[unknown[1]] == {"id": unknown[1], "rule": None, "country": "NL", "ip": DUTCH}
    assert germany[0] == A + "?"
    assert rows[germany[1]]["country"] == "DE"


async def test_the_country_header_wins_for_a_link_without_rules_too(
    settings: Settings, pool: Pool, admin_key: str
) -> None:
    settings = settings.model_copy(
        update={"country_header": "CF-IPCountry", "forwarded_allow_ips": PROXY}
    )
    async with running(settings, pool) as app:
        code = await new_link(app, admin_key, [])
        headers = {"x-forwarded-for": DUTCH, "cf-ipcountry": "FR"}
        location, click_id = await follow(app, code, PROXY, "Windows Chrome", **headers)
        rows = await stored(pool, [click_id])
    assert location == HOME + "?"
    assert rows[click_id]["country"] == "FR" and rows[click_id]["rule"] is None


async def test_the_header_is_ignored_without_trusted_proxies(
    settings: Settings, pool: Pool, admin_key: str
) -> None:
    """A country header named, but no proxy trusted: no request can bring it."""
    settings = settings.model_copy(update={"country_header": "CF-IPCountry"})
    async with running(settings, pool) as app:
        code = await new_link(app, admin_key, THREE[:1])
        location, click_id = await follow(
            app, code, DUTCH, "Windows Chrome", **{"cf-ipcountry": "DE"}
        )
        rows = await stored(pool, [click_id])
    assert location == HOME + "?"
    assert rows[click_id]["country"] == "NL"


@pytest.mark.parametrize("mode", [IpMode.hash, IpMode.truncate])
async def test_privacy_modes_keep_the_country_the_rules_judged(
    settings: Settings, pool: Pool, admin_key: str, mode: IpMode
) -> None:
    settings = settings.model_copy(update={"ip_mode": mode})
    async with running(settings, pool) as app:
        code = await new_link(app, admin_key, THREE)
        german = await follow(app, code, GERMAN, "Windows Chrome")
        dutch = await follow(app, code, DUTCH, "iPhone Safari")
        rows = await stored(pool, [german[1], dutch[1]])
    assert (german[0], dutch[0]) == (A + "?", B + "?")
    assert (rows[german[1]]["rule"], rows[german[1]]["country"]) == (1, "DE")
    assert (rows[dutch[1]]["rule"], rows[dutch[1]]["country"]) == (2, "NL")
    assert rows[german[1]]["ip"] != GERMAN and rows[dutch[1]]["ip"] != DUTCH


async def test_the_benchmarks_links_with_rules_redirect_by_their_rules(
    settings: Settings, pool: Pool, database_url: str
) -> None:
    """bench/run.py's phase "rules": copies of the seeded links with ``BENCH_RULES``."""
    seeded = await seed_links(database_url, 3)
    assert await seed_rule_links(database_url) == 3
    assert await seed_rule_links(database_url) == 0  # none twice
    code = RULES_CODE_PREFIX + seeded[0].code
    row = await pool.fetchrow("SELECT destination FROM links WHERE code = $1", code)
    assert row is not None
    async with running(settings, pool) as app:
        phone = await follow(app, code, "127.0.0.1", "iPhone Safari")
        desktop = await follow(app, code, "127.0.0.1", "Windows Chrome")
    assert phone[0] == "https://m.example.com/?"
    assert desktop[0] == row["destination"] + "?"
