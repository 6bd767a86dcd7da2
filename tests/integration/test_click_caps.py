"""Click caps at the redirect, end to end on real Redis and Postgres with a real flusher: 1,000
concurrent clicks against a cap of 100 let exactly 100 through; link and campaign caps count
only their clicks; a new window starts at zero; a cap change reaches the next redirect; a link
without caps costs no Redis command; Redis failing leaves clicks answered, not billable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis.asyncio as aioredis
from starlette.types import ASGIApp

from app.caps import clicks as caps_clicks
from app.caps.windows import CapPeriod
from app.clicks.record import Flag
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.edge import caps as edge_caps
from app.edge.caps import UNCHECKED, CapGate, EdgeCaps
from app.links import mirror
from app.links import store as link_store
from app.links.caps import ClickCap
from app.settings import Settings
from tests.conftest import TEST_REDIS_URL
from tests.integration.test_link_rules import peer, running
from tests.integration.test_links_manage import eventually

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
DESTINATION = "https://shop.example.com/item"
FALLBACK = "https://shop.example.com/sold-out"
OVER_CAP = int(Flag.over_cap)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every visitor its own session and address: no other quality rule applies."""
    return settings.model_copy(update={"duplicate_window_s": 0, "ip_clicks_per_minute": 0})


async def new_links(pool: Pool, count: int) -> tuple[int, list[tuple[int, str]]]:
    """A publisher and ``count`` links to ``DESTINATION`` (id, code)."""
    tag = uuid.uuid4().hex[:8]
    publisher_id = await pool.fetchval(
        "INSERT INTO publishers (name) VALUES ($1) RETURNING id", f"caps-{tag}"
    )
    rows = await pool.fetch(
        """INSERT INTO links (code, publisher_id, destination)
           SELECT 'cap' || $2 || n, $1, $3 FROM generate_series(1, $4) AS n RETURNING id, code""",
        publisher_id,
        tag,
        DESTINATION,
        count,
    )
    return publisher_id, [(row["id"], row["code"]) for row in rows]


async def new_cap(
    pool: Pool, publisher_id: int, cap: int, *, link_id: int | None = None, **fields: Any
) -> int:
    cap_id: int = await pool.fetchval(
        """INSERT INTO caps (publisher_id, link_id, campaign, metric, period, cap, fallback_url)
           VALUES ($1, $2, $3, 'clicks', $4, $5, $6) RETURNING id""",
        publisher_id,
        link_id,
        fields.get("campaign"),
        fields.get("period", "day"),
        cap,
        fields.get("fallback_url"),
    )
    return cap_id


async def click(app: ASGIApp, code: str, n: int, query: str = "") -> tuple[str, str]:
    """(the Location without its click id, the click id) of one new visitor's click, from an
    address of its own (``n``)."""
    async with peer(app, f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}") as browser:
        answer = await browser.get(f"/e/{code}{query}", headers={"user-agent": BROWSER})
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    [click_id] = parse_qs(urlsplit(location).query)["aff_click_id"]
    return location.removesuffix(f"aff_click_id={click_id}"), click_id


async def stored_flags(pool: Pool, ids: Sequence[str]) -> dict[str, int]:
    """Each click's flags once the flusher stored them all."""
    for _ in range(600):
        rows = await pool.fetch(
            "SELECT click_id::text AS id, flags FROM clicks WHERE click_id = ANY($1::uuid[])",
            list(ids),
        )
        if len(rows) == len(ids):
            return {row["id"]: row["flags"] for row in rows}
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(rows)} of {len(ids)} clicks stored")


async def test_a_thousand_concurrent_clicks_against_a_cap_of_100(
    settings: Settings, pool: Pool
) -> None:
    publisher_id, [(_, code)] = await new_links(pool, 1)
    await new_cap(pool, publisher_id, 100, fallback_url=FALLBACK)
    async with running(settings, pool) as app:
        answers = await asyncio.gather(*(click(app, code, n) for n in range(1000)))
    flags = await stored_flags(pool, [click_id for _, click_id in answers])
    where = [location.rstrip("?&") for location, _ in answers]
    assert (where.count(DESTINATION), where.count(FALLBACK)) == (100, 900)
    assert sorted(flags.values()).count(0) == 100
    assert sorted(flags.values()).count(OVER_CAP) == 900
    for location, click_id in answers:  # the fallback's clicks are the flagged ones
        assert (flags[click_id] == OVER_CAP) == location.startswith(FALLBACK)


async def test_link_and_campaign_caps_count_only_their_clicks(
    settings: Settings, pool: Pool
) -> None:
    publisher_id, [(capped_id, capped), (_, other)] = await new_links(pool, 2)
    await new_cap(pool, publisher_id, 2, link_id=capped_id, fallback_url=FALLBACK + "/link")
    await new_cap(pool, publisher_id, 3, campaign="spring")  # no fallback: where it went
    async with running(settings, pool) as app:
        plain = [await click(app, other, n) for n in range(5)]
        on_capped = [await click(app, capped, 100 + n) for n in range(3)]
        spring = [await click(app, other, 200 + n, "?cn=spring") for n in range(4)]
        autumn = [await click(app, other, 300 + n, "?cn=autumn") for n in range(2)]
    answers = [*plain, *on_capped, *spring, *autumn]
    flags = await stored_flags(pool, [click_id for _, click_id in answers])
    over = [flags[click_id] == OVER_CAP for _, click_id in answers]
    assert over == [False] * 5 + [False, False, True] + [False] * 3 + [True] + [False] * 2
    assert on_capped[2][0].startswith(FALLBACK + "/link")
    assert spring[3][0].startswith(DESTINATION)  # a cap without fallback: the link's own


async def test_a_new_window_starts_at_zero_and_counters_expire_after_it(
    redis: aioredis.Redis, key_prefix: str
) -> None:
    keys = RedisKeys(key_prefix)
    gate = CapGate(redis, keys, UTC, timeout_s=2.0)
    caps = EdgeCaps.compile([ClickCap(7, 2, "day")], lambda url: (url, ""))
    assert caps is not None
    today = datetime(2026, 12, 1, 23, 59, tzinfo=UTC)
    tomorrow = today + timedelta(minutes=2)
    at = [int(moment.timestamp() * 1_000_000) for moment in (today, tomorrow)]
    answers = [await gate.check(caps, 42, None, at[0]) for _ in range(3)]
    assert answers == [None, None, caps.caps[0]]
    assert await gate.check(caps, 42, None, at[1]) is None  # the next day: from zero
    cap_row = _CapRow(7, 42, "day")
    assert await caps_clicks.clicks_used(redis, keys, cap_row, today, UTC) == 2
    assert await caps_clicks.clicks_used(redis, keys, cap_row, tomorrow, UTC) == 1
    expires = await redis.expiretime(keys.cap_clicks(42, 7, "20261201"))
    assert expires == int((today + timedelta(minutes=1, days=1)).timestamp())
    await gate.close()


class _CapRow:
    def __init__(self, id: int, publisher_id: int, period: str) -> None:
        self.id, self.publisher_id, self.period = id, publisher_id, CapPeriod(period)


async def test_a_cap_change_reaches_the_next_redirect(
    settings: Settings, pool: Pool, redis: aioredis.Redis
) -> None:
    publisher_id, [(_, code)] = await new_links(pool, 1)
    mirror_to = caps_clicks.LinkMirror(redis, RedisKeys(settings.key_prefix))
    async with running(settings, pool) as app:
        assert (await click(app, code, 1))[0].startswith(DESTINATION)
        cap_id = await new_cap(pool, publisher_id, 0, fallback_url=FALLBACK)
        async with pool.acquire() as conn:
            assert await caps_clicks.publish_caps(conn, mirror_to, publisher_id) == 1

        async def capped() -> bool:
            return (await click(app, code, 2))[0].startswith(FALLBACK)

        await eventually(capped, "the new cap was not applied")
        await pool.execute(
            "UPDATE caps SET disabled_at = now(), updated_at = now() WHERE id = $1", cap_id
        )
        async with pool.acquire() as conn:
            await caps_clicks.publish_caps(conn, mirror_to, publisher_id)

        async def free() -> bool:
            return (await click(app, code, 3))[0].startswith(DESTINATION)

        await eventually(free, "the disabled cap was still applied")


async def test_a_link_without_caps_makes_no_cap_command(
    settings: Settings, pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    publisher_id, [(capped_id, capped), (_, free)] = await new_links(pool, 2)
    await new_cap(pool, publisher_id, 1000, link_id=capped_id)
    calls: list[int] = []
    run = edge_caps._run

    async def counted(sender: Any, batch: list[Any]) -> list[Any]:
        calls.append(len(batch))  # script calls sent in one write: one round trip
        return await run(sender, batch)

    monkeypatch.setattr(edge_caps, "_run", counted)
    async with running(settings, pool) as app:
        for n in range(20):
            await click(app, free, n)
        assert calls == []
        for n in range(5):
            await click(app, capped, 100 + n)
        assert sum(calls) == 5  # one script call each (one publisher per batch)


async def test_redis_unavailable_leaves_clicks_unchecked_not_billable(key_prefix: str) -> None:
    caps = EdgeCaps.compile([ClickCap(1, 10, "month")], lambda url: (url, ""))
    assert caps is not None
    down = aioredis.Redis.from_url("redis://127.0.0.1:1")  # nothing listens there
    gate = CapGate(down, RedisKeys(key_prefix), UTC, timeout_s=0.5)
    assert await gate.check(caps, 1, None, 1_700_000_000_000_000) is UNCHECKED
    spooling = CapGate(
        aioredis.Redis.from_url(TEST_REDIS_URL),
        RedisKeys(key_prefix),
        UTC,
        timeout_s=0.5,
        healthy=lambda: False,
    )
    assert await spooling.check(caps, 1, None, 1_700_000_000_000_000) is UNCHECKED
    await down.aclose()


async def test_one_batch_of_many_publishers_and_caps_counts_each_exactly(
    redis: aioredis.Redis, key_prefix: str
) -> None:
    """Clicks of two publishers in the same batches, each click under a day and a month cap,
    one of the two campaign caps: each counter ends at its cap, never past it."""
    gate = CapGate(redis, RedisKeys(key_prefix), UTC, timeout_s=2.0)
    caps = EdgeCaps.compile(
        [ClickCap(1, 30, "day"), ClickCap(2, 50, "month"), ClickCap(3, 10, "day", "spring")],
        lambda url: (url, ""),
    )
    assert caps is not None
    now = 1_790_000_000_000_000
    checks = [
        gate.check(caps, publisher, "spring" if n % 2 else None, now)
        for n in range(200)
        for publisher in (5, 6)
    ]
    answers = await asyncio.gather(*checks)
    for publisher in (0, 1):
        mine = answers[publisher::2]
        assert sum(answer is None for answer in mine) == 30  # the day cap, the tightest
        assert sum(answer is not None and answer.cap_id == 3 for answer in mine) > 0
    await gate.close()


async def test_a_link_change_without_its_caps_is_read_through_with_them(
    settings: Settings, pool: Pool, redis: aioredis.Redis
) -> None:
    """The API's link change cannot know the link's caps: its record says so, the redirect
    reads the link with its caps from Postgres and writes the full record back."""
    publisher_id, [(_, code)] = await new_links(pool, 1)
    await new_cap(pool, publisher_id, 0, fallback_url=FALLBACK)
    keys = RedisKeys(settings.key_prefix)
    async with pool.acquire() as conn:
        link = await link_store.get_link(conn, code)
    assert link is not None
    assert await mirror.publish_change(redis, keys, link)
    unknown = mirror.decode(code, await redis.get(keys.link(code)) or b"")
    assert unknown is not None and unknown.caps is None
    async with running(settings, pool) as app:
        assert (await click(app, code, 1))[0].startswith(FALLBACK)

        async def rewritten() -> bool:
            known = mirror.decode(code, await redis.get(keys.link(code)) or b"")
            return known is not None and known.caps is not None and len(known.caps) == 1

        await eventually(rewritten, "the mirror record was not rewritten with the caps")
