"""The pure parts of click caps at the redirect: which caps count a click, the window a click
falls in (in the period time zone), the counters' names and expiry, and the script call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis

from app.caps.windows import CapPeriod
from app.core.keys import RedisKeys
from app.edge.caps import EXPIRE_AFTER_END_S, CapGate, EdgeCaps, Windows, window_of
from app.links.caps import ClickCap

BERLIN = ZoneInfo("Europe/Berlin")


def split(url: str) -> tuple[str, str]:
    return url + "?aff_click_id=", ""


def us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def test_campaign_caps_count_only_their_campaign() -> None:
    caps = EdgeCaps.compile(
        [ClickCap(1, 5, "day", "spring"), ClickCap(2, 9, "month"), ClickCap(3, 1, "day", "fall")],
        split,
    )
    assert caps is not None and caps.campaigns
    assert [c.cap_id for c in caps.applying(None)] == [2]
    assert [c.cap_id for c in caps.applying("spring")] == [1, 2]
    assert [c.cap_id for c in caps.applying("Spring")] == [2]  # cn compares exactly
    plain = EdgeCaps.compile([ClickCap(2, 9, "month")], split)
    assert plain is not None and not plain.campaigns
    assert plain.applying("spring") is plain.caps  # no campaign cap: nothing filtered


def test_a_fallback_is_split_around_the_click_id_and_unknown_periods_are_skipped() -> None:
    caps = EdgeCaps.compile(
        [ClickCap(1, 5, "fortnight"), ClickCap(2, 0, "day", None, "https://example.com/f")],
        split,
    )
    assert caps is not None and [c.cap_id for c in caps.caps] == [2]
    fallback = caps.caps[0].fallback
    assert fallback is not None and fallback.location("X") == "https://example.com/f?aff_click_id=X"
    assert EdgeCaps.compile([ClickCap(1, 5, "fortnight")], split) is None


def test_windows_are_days_months_and_periods_in_the_period_zone() -> None:
    # 23:30 UTC on 9 March is already the 10th in Berlin: a new day and calculation period.
    late = datetime(2026, 3, 9, 23, 30, tzinfo=UTC)
    day, first, end, expire = window_of(CapPeriod.day, us(late), BERLIN)
    assert day == "20260310"
    assert first == us(datetime(2026, 3, 10, tzinfo=BERLIN))
    assert end == us(datetime(2026, 3, 11, tzinfo=BERLIN))
    assert int(expire) == int(datetime(2026, 3, 11, tzinfo=BERLIN).timestamp()) + EXPIRE_AFTER_END_S
    assert window_of(CapPeriod.month, us(late), BERLIN)[0] == "20260301"
    assert window_of(CapPeriod.calculation_period, us(late), BERLIN)[0] == "20260310"
    assert window_of(CapPeriod.calculation_period, us(late), UTC)[0] == "20260210"
    # A period's end is the next one's first day: 10 April, local midnight.
    assert window_of(CapPeriod.calculation_period, us(late), BERLIN)[2] == us(
        datetime(2026, 4, 10, tzinfo=BERLIN)
    )


def test_the_window_cache_moves_on_at_the_windows_end() -> None:
    windows = Windows(BERLIN)
    # The day clocks go back: 25 hours (elapsed time, hence the arithmetic in UTC).
    midnight = datetime(2026, 10, 25, tzinfo=BERLIN).astimezone(UTC)
    assert windows.window(CapPeriod.day, us(midnight))[0] == "20261025"
    assert windows.window(CapPeriod.day, us(midnight + timedelta(hours=24, minutes=30)))[0] == (
        "20261025"
    )
    assert windows.window(CapPeriod.day, us(midnight + timedelta(hours=25)))[0] == "20261026"
    assert windows.window(CapPeriod.day, us(midnight - timedelta(seconds=1)))[0] == "20261024"


def test_a_clicks_counters_share_their_publishers_hash_tag() -> None:
    keys = RedisKeys("ct")
    gate = CapGate(aioredis.Redis(), keys, UTC, timeout_s=0.25)  # connects nothing
    caps = EdgeCaps.compile([ClickCap(7, 100, "day"), ClickCap(8, 5, "month")], split)
    assert caps is not None
    now = us(datetime(2026, 12, 1, 12, tzinfo=UTC))
    call_keys, args = gate.call(caps.caps, 42, now)
    assert call_keys == [b"ct:cap:{p42}:7:20261201", b"ct:cap:{p42}:8:20261201"]
    day_end = int(datetime(2026, 12, 2, tzinfo=UTC).timestamp()) + EXPIRE_AFTER_END_S
    month_end = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp()) + EXPIRE_AFTER_END_S
    assert args == [b"2", b"100", b"5", b"%d" % day_end, b"%d" % month_end]
