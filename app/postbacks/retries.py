"""When a failed delivery is tried again. Pure.

Exponential backoff with jitter: the n-th failed attempt waits a random time between half
and all of ``min(max, first * 2**(n-1))`` seconds (the random half spreads the retries of
many deliveries that failed together, an endpoint's outage say, instead of sending them
back at once). A delivery whose next try would fall past ``give_up_s`` after it was queued
is failed instead: it stays in the log, and can be replayed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta


def retry_delay(
    attempts: int, first_s: float, max_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after ``attempts`` failed attempts (1 or more)."""
    exponent = min(max(attempts - 1, 0), 60)  # 2**60 s is past any max
    ceiling = min(max_s, first_s * 2.0**exponent)
    return ceiling / 2 + rand() * ceiling / 2


def next_try(
    attempts: int,
    queued_at: datetime,
    now: datetime,
    *,
    first_s: float,
    max_s: float,
    give_up_s: float,
    rand: Callable[[], float] = random.random,
) -> datetime | None:
    """When to try again after ``attempts`` failed attempts; None: give up."""
    due = now + timedelta(seconds=retry_delay(attempts, first_s, max_s, rand))
    return None if due > queued_at + timedelta(seconds=give_up_s) else due
