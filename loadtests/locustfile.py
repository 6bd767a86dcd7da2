"""Locust load test of clicktrack: traffic shaped like the real thing.

- Visitors follow short links (``/e/<code>``): link popularity is Zipf-distributed over
  thousands of links; tracking strings (af, cn, cv, dp) come in the combinations publishers
  use, now and then too long; most visitors are new, some come back with their session cookie;
  a few are crawlers, prefetches or link checkers (HEAD); a few follow a dead link (404).
- Publishers use the API at a low rate: list their links, read one, create one.

Data (link codes and a publisher API key) comes from a JSON file, ``--data-file`` or
``LOADTEST_DATA``, written by ``python -m loadtests.setup_data`` (``make loadtest`` does it).
Pass thresholds, checked when the test ends (the exit code says whether they held): no
failure at all, p95 of all requests at most ``--p95-ms``. See docs/performance.md for runs,
including distributed mode (one master, several workers).

Redirects are never followed: their targets are other hosts, which a load test must not hit.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import random
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from locust import FastHttpUser, between, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

log = logging.getLogger("loadtest")

DEFAULT_DATA_FILE = "test-artifacts/loadtest-data.json"
CLICK_ID_PARAM = "aff_click_id"

NEW_VISITOR_SHARE = 0.65  # of clicks; the others come back with their session cookie
CRAWLER_SHARE = 0.04  # of visitors
PREFETCH_SHARE = 0.03  # of clicks
HEAD_SHARE = 0.01  # of clicks: link checkers
DEAD_LINK_SHARE = 0.01  # of clicks: a code that does not exist
ZIPF_EXPONENT = 1.1

BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
)
CRAWLERS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "",  # no user agent at all: a script
)
REFERERS = (
    "https://blog.example.org/best-phones-2024",
    "https://forum.example.net/t/deals/4411",
    "https://t.co/Ab12Cd",
    "https://mail.example.com/",
)
LANGUAGES = ("en-US,en;q=0.9", "de-DE,de;q=0.8,en;q=0.5", "es-ES,es;q=0.9", "ja,en;q=0.7")
CAMPAIGNS = ("spring_sale", "bf2024", "newsletter-07", "yt_review", "c123")
CREATIVES = ("banner_300x250", "text_link", "video_desc", "cv9")
DYNAMIC = ("user-8812", "s=ab12&x=1", "café ☕", "order_ref_20240611_001", "日本語")


def _arguments(parser: Any, **_kwargs: Any) -> None:
    parser.add_argument(
        "--data-file",
        env_var="LOADTEST_DATA",
        default=DEFAULT_DATA_FILE,
        help="JSON with link codes and a publisher API key (python -m loadtests.setup_data)",
    )
    parser.add_argument(
        "--p95-ms",
        env_var="LOADTEST_P95_MS",
        type=float,
        default=100.0,
        help="fail the run when the p95 response time of all requests is above this",
    )


events.init_command_line_parser.add_listener(_arguments)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Data:
    codes: tuple[str, ...]
    api_key: str
    cumulative: tuple[float, ...]  # Zipf weights of codes, in order of popularity


@cache
def load_data(path: str) -> Data:
    raw = json.loads(Path(path).read_text())
    codes = list(raw["codes"])
    if not codes:
        raise ValueError(f"{path} lists no link codes")
    random.Random(7).shuffle(codes)  # popularity unrelated to creation order
    weights = itertools.accumulate(1 / rank**ZIPF_EXPONENT for rank in range(1, len(codes) + 1))
    return Data(tuple(codes), str(raw["api_key"]), tuple(weights))


def tracking_query() -> str:
    """Tracking strings as publishers combine them: none, af, af+cn, af+cn+cv, all four."""
    roll = random.random()
    values: list[tuple[str, str]] = []
    if roll >= 0.30:
        values.append(("af", f"{random.randint(1, 400):03d}"))
    if roll >= 0.55:
        values.append(("cn", random.choice(CAMPAIGNS)))
    if roll >= 0.75:
        values.append(("cv", random.choice(CREATIVES)))
    if roll >= 0.88:
        values.append(("dp", random.choice(DYNAMIC)))
    if random.random() < 0.01:  # a publisher's mistake: too long, stored flagged
        values.append(("dp", "x" * 200))
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in values)


class Visitor(FastHttpUser):
    """A stream of people clicking links: each click is a new visitor or a returning one."""

    weight = 50
    wait_time = between(0.05, 0.5)

    def on_start(self) -> None:
        self.data = load_data(self.environment.parsed_options.data_file)
        self.headers: dict[str, str] = {}
        self.cookie: str | None = None
        self.new_visitor()

    def new_visitor(self) -> None:
        self.cookie = None
        self.client.cookiejar.clear()  # the session cookie is sent by hand, below
        if random.random() < CRAWLER_SHARE:
            self.headers = {"User-Agent": random.choice(CRAWLERS)}
            return
        self.headers = {
            "User-Agent": random.choice(BROWSERS),
            "Accept-Language": random.choice(LANGUAGES),
        }
        if random.random() < 0.7:
            self.headers["Referer"] = random.choice(REFERERS)

    def pick_code(self) -> str:
        cumulative = self.data.cumulative
        point = random.random() * cumulative[-1]
        return self.data.codes[min(bisect.bisect_left(cumulative, point), len(cumulative) - 1)]

    @task
    def click(self) -> None:
        if random.random() < NEW_VISITOR_SHARE:
            self.new_visitor()
        if random.random() < DEAD_LINK_SHARE:
            self.dead_link()
            return
        headers = dict(self.headers)
        if self.cookie:
            headers["Cookie"] = self.cookie
        if random.random() < PREFETCH_SHARE:
            headers["Sec-Purpose"] = "prefetch"
        method = "HEAD" if random.random() < HEAD_SHARE else "GET"
        query = tracking_query()
        path = f"/e/{self.pick_code()}" + (f"?{query}" if query else "")
        with self.client.request(
            method,
            path,
            headers=headers,
            allow_redirects=False,
            name=f"{method} /e/[code]",
            catch_response=True,
        ) as response:
            location = response.headers.get("location") or ""
            if response.status_code != 302:
                response.failure(f"expected 302, got {response.status_code}")
            elif f"{CLICK_ID_PARAM}=" not in location:
                response.failure(f"no click id in the Location: {location[:200]}")
            else:
                set_cookie = response.headers.get("set-cookie") or ""
                self.cookie = set_cookie.partition(";")[0] or None

    def dead_link(self) -> None:
        code = "zz" + "".join(random.choices(string.ascii_letters, k=10))
        with self.client.get(
            f"/e/{code}", allow_redirects=False, name="GET /e/[unknown]", catch_response=True
        ) as response:
            if response.status_code == 404:
                response.success()
            else:
                response.failure(f"expected 404 for an unknown code, got {response.status_code}")


class Publisher(FastHttpUser):
    """A publisher's dashboard or script using the API now and then."""

    fixed_count = 1  # whatever the number of users: the API sees a low, steady rate
    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        self.data = load_data(self.environment.parsed_options.data_file)
        self.auth = {"Authorization": f"Bearer {self.data.api_key}"}

    @task(5)
    def list_links(self) -> None:
        self.client.get("/api/v1/links?limit=50", headers=self.auth, name="GET /api/v1/links")

    @task(3)
    def get_link(self) -> None:
        code = random.choice(self.data.codes)
        self.client.get(f"/api/v1/links/{code}", headers=self.auth, name="GET /api/v1/links/[code]")

    @task(1)
    def create_link(self) -> None:
        item = random.randint(1, 10**9)
        self.client.post(
            "/api/v1/links",
            json={"destination": f"https://shop.example.com/item/{item}?src=loadtest"},
            headers=self.auth,
            name="POST /api/v1/links",
        )


def _check_thresholds(environment: Environment, **_kwargs: Any) -> None:
    """Fail the run (exit code 1) unless there was no failure and p95 held."""
    if isinstance(environment.runner, WorkerRunner):
        return  # the master (or a local runner) judges the whole run
    assert environment.parsed_options is not None
    total = environment.stats.total
    limit = float(environment.parsed_options.p95_ms)
    p95 = total.get_response_time_percentile(0.95) or 0.0
    problems = []
    if total.num_requests == 0:
        problems.append("no request was made")
    if total.num_failures:
        problems.append(f"{total.num_failures} of {total.num_requests} requests failed")
    if p95 > limit:
        problems.append(f"p95 {p95:.0f} ms is above {limit:.0f} ms")
    if problems:
        log.error("load test FAILED: %s", "; ".join(problems))
        environment.process_exit_code = 1
    else:
        log.info(
            "load test passed: %d requests, 0 failures, p95 %.0f ms (limit %.0f ms)",
            total.num_requests,
            p95,
            limit,
        )


events.quitting.add_listener(_check_thresholds)  # type: ignore[no-untyped-call]
