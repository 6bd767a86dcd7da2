"""The duplicate windows' Lua script against the rule it implements, on real Redis.

For a click (score, member) added to a key, the answer is how many clicks of that key already
added come strictly before it in (score, member) order within ``window`` ms. Clicks arrive in
stream order; a click delivered again later (a crash before its ack) gets its first answer.
"""

from __future__ import annotations

import random
import uuid

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.flusher.quality import KEEP_MS, ClickClassifier
from app.keys import RedisKeys
from app.settings import Settings

WINDOW = 30_000


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
    present: set[tuple[int, str]] = set()
    first_answer: dict[tuple[int, str], int] = {}
    for (score, member), count in zip(arrivals, counts, strict=True):
        present.add((score, member))
        assert count == expected(present, score, member)
        assert first_answer.setdefault((score, member), count) == count
    await redis.delete(key)
    assert KEEP_MS > WINDOW
