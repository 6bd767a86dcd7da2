"""The duplicate windows' Lua script against the rule it implements, on real Redis.

For a click (score, member) added to a key, the answer is how many clicks of that key already
added come strictly before it in (score, member) order within ``window`` ms. Clicks arrive in
stream order; a click delivered again later (a crash before its ack) gets its first answer.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis.asyncio as aioredis
from devstack import servers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.clicks import stream
from app.clicks.record import Click, Flag, encode
from app.core.keys import RedisKeys
from app.flusher.quality import KEEP_MS, ClickClassifier
from app.settings import Settings
from tests.support.processes import PROJECT_ROOT, free_port
from tests.support.reports import click as scripted_click

WINDOW = 30_000
REDIS_CONF = PROJECT_ROOT / "deploy" / "redis" / "redis.conf"


def expected(present: set[tuple[int, str]], score: int, member: str) -> int:
    return sum(
        1
        for other_score, other in present
        if other_score >= score - WINDOW and (other_score, other) < (score, member)
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    clicks=st.lists(
        st.tuples(
            # ties and the window's edges, as well as anything
            st.one_of(
                st.sampled_from([0, 1, WINDOW - 1, WINDOW, WINDOW + 1, 2 * WINDOW]),
                st.integers(0, 5 * WINDOW),
            ),
            st.sampled_from("abcdefgh"),
        ),
        min_size=1,
        max_size=12,
        unique_by=lambda click: click[1],  # a member is a click id: one time each
    ),
    seed=st.integers(0, 1000),
)
async def test_counts_follow_the_rule_and_repeat_for_redeliveries(
    settings: Settings,
    redis: aioredis.Redis,
    key_prefix: str,
    clicks: list[tuple[int, str]],
    seed: int,
) -> None:
    classifier = ClickClassifier(settings, redis, RedisKeys(key_prefix))
    key = f"{key_prefix}:window:{uuid.uuid4().hex}".encode()
    rng = random.Random(seed)
    arrivals = sorted(clicks)
    for click in rng.sample(clicks, len(clicks) // 2):  # delivered again, some time later
        arrivals.insert(rng.randint(arrivals.index(click) + 1, len(arrivals)), click)
    base = 1_700_000_000_000  # realistic millisecond times
    args: list[bytes] = []
    for score, member in arrivals:
        args += (member.encode(), b"%d" % (base + score), b"%d" % WINDOW)
    counts = await classifier._earlier_in_window([key] * len(arrivals), args)
    await classifier.close()
    present: set[tuple[int, str]] = set()
    first_answer: dict[tuple[int, str], int] = {}
    for (score, member), count in zip(arrivals, counts, strict=True):
        present.add((score, member))
        assert count == expected(present, score, member)
        assert first_answer.setdefault((score, member), count) == count
    await redis.delete(key)
    assert KEEP_MS > WINDOW


async def test_windows_stay_out_of_the_aof(settings: Settings, tmp_path: Path) -> None:
    """Redis restarted from its AOF (the shipped redis.conf) has the stream back, and no
    window: the script's writes are not persisted, the stream's are."""
    port = free_port()
    node = servers.start_redis(tmp_path / "redis", port, config=REDIS_CONF)
    keys = RedisKeys("aof-test")
    assert settings.duplicate_window_s >= 3
    redis = aioredis.Redis.from_url(node.url)
    try:
        classifier = ClickClassifier(settings, redis, keys)
        clicks = [_click(n) for n in range(3)]
        await stream.add_many(redis, keys, [encode(click) for click in clicks])
        await classifier.classify(clicks)
        assert await redis.keys(f"{keys.prefix}:seen:*")
        await redis.aclose()
        node.stop()  # SIGTERM: the AOF is fsynced
        node = servers.start_redis(tmp_path / "redis", port, config=REDIS_CONF)
        redis = aioredis.Redis.from_url(node.url)
        assert await redis.xlen(keys.clicks_stream) == 3
        assert await redis.keys(f"{keys.prefix}:seen:*") == []
        # Judged again after the restart: the same session's later clicks are duplicates.
        again = [_click(n) for n in range(3)]
        classifier = ClickClassifier(settings, redis, keys)
        await classifier.classify(again)
        assert [bool(click.flags & Flag.duplicate) for click in again] == [False, True, True]
    finally:
        await redis.aclose()
        node.stop()


def _click(n: int) -> Click:
    """One session's n-th click on one link, a second apart."""
    return scripted_click(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n), 1, 1, "s" * 20)
