"""What the benchmark sends: a realistic mix of redirect requests (for wrk) and of click
records (to pre-fill the stream for the flusher drain).

Link popularity follows a Zipf law, tracking strings come in the combinations publishers
use, a share of visitors return with their signed session cookie, a few are crawlers or
prefetches. Deterministic for a given seed.
"""

from __future__ import annotations

import bisect
import itertools
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import uuid_utils

from app.clicks import record
from app.clicks.record import Click, Flag
from app.edge.session import SessionCookie

BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
)
CRAWLERS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
)
REFERERS = (
    "https://blog.example.org/best-phones-2024",
    "https://forum.example.net/t/deals/4411",
    "https://t.co/Ab12Cd",
    "https://www.google.com/",
)
LANGUAGES = ("en-US,en;q=0.9", "de-DE,de;q=0.8,en;q=0.5", "es-ES,es;q=0.9", "ja,en;q=0.7")
CAMPAIGNS = ("spring_sale", "bf2024", "newsletter-07", "yt_review", "c123")
CREATIVES = ("banner_300x250", "text_link", "video_desc", "cv9")
DYNAMIC = ("user-8812", "s=ab12&x=1", "café ☕", "order_ref_20240611_001", "d" * 128)

CRAWLER_SHARE = 0.04
PREFETCH_SHARE = 0.02
RETURNING_SHARE = 0.30


def zipf_cumulative(count: int, exponent: float = 1.1) -> list[float]:
    """Cumulative weights of ranks 1..count under a Zipf law, for ``random.choices``."""
    return list(itertools.accumulate(1.0 / rank**exponent for rank in range(1, count + 1)))


class ZipfPicker:
    def __init__(self, items: Sequence[str], rng: random.Random, exponent: float = 1.1) -> None:
        self._items = list(items)
        rng.shuffle(self._items)  # popularity unrelated to creation order
        self._cumulative = zipf_cumulative(len(self._items), exponent)
        self._rng = rng

    def pick(self) -> str:
        point = self._rng.random() * self._cumulative[-1]
        return self._items[bisect.bisect_left(self._cumulative, point)]


def tracking_values(rng: random.Random) -> dict[str, str]:
    """The tracking strings of one click, as publishers combine them."""
    shape = rng.random()
    values: dict[str, str] = {}
    if shape < 0.30:  # none
        return values
    values["af"] = f"{rng.randint(1, 400):03d}"
    if shape < 0.55:
        return values
    values["cn"] = rng.choice(CAMPAIGNS)
    if shape < 0.75:
        return values
    values["cv"] = rng.choice(CREATIVES)
    if shape < 0.88:
        return values
    values["dp"] = rng.choice(DYNAMIC)
    return values


def query_string(values: dict[str, str], rng: random.Random) -> str:
    parts = [f"{name}={quote(value, safe='')}" for name, value in values.items()]
    if rng.random() < 0.1:  # tracking strings mixed with other parameters
        parts.insert(0, "utm_source=newsletter")
    return "&".join(parts)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]

    def line(self) -> str:
        """The request file format of redirect.lua."""
        return "\t".join([self.method, self.path, *(f"{k}: {v}" for k, v in self.headers)])


def redirect_requests(
    codes: Sequence[str], session: SessionCookie, count: int, seed: int = 1
) -> list[Request]:
    """``count`` requests for ``/e/<code>``; a share carries a valid signed session cookie."""
    rng = random.Random(seed)
    picker = ZipfPicker(codes, rng)
    sessions = [session.sign(session.new_session_id()) for _ in range(max(1, count // 20))]
    requests = []
    for _ in range(count):
        query = query_string(tracking_values(rng), rng)
        path = f"/e/{picker.pick()}" + (f"?{query}" if query else "")
        crawler = rng.random() < CRAWLER_SHARE
        headers = [("User-Agent", rng.choice(CRAWLERS if crawler else BROWSERS))]
        if not crawler:
            headers.append(("Accept-Language", rng.choice(LANGUAGES)))
            if rng.random() < 0.7:
                headers.append(("Referer", rng.choice(REFERERS)))
            if rng.random() < RETURNING_SHARE:
                headers.append(("Cookie", f"{session.name}={rng.choice(sessions)}; _ga=GA1.2.3"))
            if rng.random() < PREFETCH_SHARE:
                headers.append(("Sec-Purpose", "prefetch"))
        requests.append(Request("GET", path, tuple(headers)))
    return requests


@dataclass(frozen=True)
class LinkRow:
    id: int
    code: str
    publisher_id: int


def click_payloads(
    links: Sequence[LinkRow], count: int, seed: int = 2, arrival_rate: int = 20_000
) -> Iterator[bytes]:
    """``count`` encoded click records as the redirect writes them."""
    rng = random.Random(seed)
    by_code = {link.code: link for link in links}
    picker = ZipfPicker(list(by_code), rng)
    sessions = [f"s{n:021d}" for n in range(max(1, count // 3))]
    # Dated as if they had arrived at arrival_rate clicks/s, the last one now.
    step_us = 1_000_000 // arrival_rate
    first_us = time.time_ns() // 1000 - count * step_us
    for n in range(count):
        link = by_code[picker.pick()]
        values = tracking_values(rng)
        crawler = rng.random() < CRAWLER_SHARE
        returning = rng.random() < RETURNING_SHARE
        yield record.encode(
            Click(
                click_id=str(uuid_utils.uuid7()),
                ts_us=first_us + n * step_us,
                link_id=link.id,
                code=link.code,
                publisher_id=link.publisher_id,
                af=values.get("af"),
                cn=values.get("cn"),
                cv=values.get("cv"),
                dp=values.get("dp"),
                session_id=rng.choice(sessions) if returning else f"n{n:021d}",
                session_new=not returning,
                ip=f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                user_agent=rng.choice(CRAWLERS if crawler else BROWSERS),
                referer=None if crawler else rng.choice(REFERERS),
                accept_language=None if crawler else rng.choice(LANGUAGES),
                method="GET",
                flags=int(Flag.bot) if crawler else 0,
            )
        )
