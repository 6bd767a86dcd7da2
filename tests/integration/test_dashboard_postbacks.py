"""The dashboard's Postbacks page over HTTP in-process, on real Postgres: the publisher's
endpoints and delivery log with every attempt, its filters and pages, bad filters in words,
and the three forms (replay one, replay the failed ones, send a test event) changing the
database as the API's calls do, with the same audit entries; forms without the session's
token, another publisher's ids and a visitor without a session change nothing.
(tests/integration/test_dashboard_postbacks_browser.py drives it in Chromium.)"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.accounts.apikeys import Role, create_key
from app.core.db import Pool
from app.dashboard.postback_log import PAGE_SIZE
from app.postbacks import outbox, store
from app.postbacks.endpoints import EndpointKind
from app.postbacks.queue import Attempt, Outcome, record_attempt
from tests.integration.test_dashboard import CSRF, sign_in

POSTBACK_URL = "https://ts.example.com/pb?cid={click_id}&txid={event_id}"
WEBHOOK_URL = "https://hooks.example.com/clicktrack"
# A receiver's answer: markup, and a right-to-left override that would reorder the text.
HOSTILE = "<script>alert(1)</script>\u202eevil"


@pytest.fixture(autouse=True)
async def endpoints_disabled_after(pool: Pool) -> AsyncIterator[None]:
    """Each test's endpoints end with it: no sender of a later test sends to them."""
    yield
    await pool.execute("UPDATE postback_endpoints SET disabled_at = now()")


async def new_publisher(pool: Pool, name: str) -> tuple[int, str]:
    async with pool.acquire() as conn:
        publisher_id: int = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ($1) RETURNING id", name
        )
        _, key = await create_key(conn, Role.publisher, publisher_id)
    return publisher_id, key


async def new_endpoint(pool: Pool, publisher_id: int, kind: str, url: str) -> tuple[int, str]:
    async with pool.acquire() as conn:
        made, secret = await store.create_endpoint(
            conn, publisher_id, EndpointKind(kind), url, ["order_completed", "order_refunded"]
        )
    return made.id, secret or ""


async def queued_test_event(
    pool: Pool, endpoint_id: int, publisher_id: int, *tries: Attempt
) -> int:
    """A queued test event's delivery with ``tries`` recorded as the sender records them."""
    async with pool.acquire() as conn:
        delivery = await outbox.emit_test(conn, endpoint_id, publisher_id)
        for attempt in tries:
            await record_attempt(conn, delivery, attempt, None)
        await conn.execute(
            "UPDATE postback_deliveries SET attempts = $2 WHERE id = $1", delivery, len(tries)
        )
    return delivery


async def status_of(pool: Pool, delivery: int) -> tuple[str, int]:
    row = await pool.fetchrow(
        "SELECT status, attempts FROM postback_deliveries WHERE id = $1", delivery
    )
    assert row is not None
    return row["status"], row["attempts"]


async def replay_entries(pool: Pool, publisher_id: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT actor, target_id, before, after FROM audit_log
           WHERE publisher_id = $1 AND action = 'postback_delivery.replay' ORDER BY id""",
        publisher_id,
    )
    return [dict(r) for r in rows]


class Log:
    """A publisher signed in, with a webhook and a postback endpoint and three deliveries:
    ``failed`` (500 twice, the second the last), ``delivered`` (200), ``pending`` (none)."""

    def __init__(self, client: httpx.AsyncClient, pool: Pool) -> None:
        self.client, self.pool = client, pool

    async def open(self) -> Log:
        self.publisher_id, self.key = await new_publisher(self.pool, "Example <b>Deals</b>")
        self.webhook, self.secret = await new_endpoint(
            self.pool, self.publisher_id, "webhook", WEBHOOK_URL
        )
        self.postback, _ = await new_endpoint(
            self.pool, self.publisher_id, "postback", POSTBACK_URL
        )
        self.failed = await queued_test_event(
            self.pool,
            self.webhook,
            self.publisher_id,
            Attempt(Outcome.retry, 41, 500, HOSTILE, "answered 500"),
            Attempt(Outcome.failed, 57, 500, "still down", "answered 500"),
        )
        self.delivered = await queued_test_event(
            self.pool, self.postback, self.publisher_id, Attempt(Outcome.delivered, 12, 200, "ok")
        )
        self.pending = await queued_test_event(self.pool, self.postback, self.publisher_id)
        assert (await sign_in(self.client, self.key)).status_code == 303
        return self

    async def page(self, **params: str | int) -> httpx.Response:
        return await self.client.get("/dashboard/postbacks", params=params)

    async def shown(self, **params: str | int) -> list[int]:
        """The deliveries' ids on the page, in order."""
        answer = await self.page(**params)
        assert answer.status_code == 200, answer.text
        return [int(i) for i in re.findall(r'<tr data-delivery="(\d+)"', answer.text)]

    async def token(self) -> str:
        found = CSRF.search((await self.page()).text)
        assert found is not None
        return found.group(1)

    async def post(self, path: str, **form: str | int) -> httpx.Response:
        data = {"csrf": await self.token(), **{k: str(v) for k, v in form.items()}}
        return await self.client.post(f"/dashboard/postbacks{path}", data=data)


@pytest.fixture
async def opened(app_client: httpx.AsyncClient, pool: Pool) -> Log:
    return await Log(app_client, pool).open()


def row(page: httpx.Response, key: str, value: int) -> str:
    found = re.search(rf'<tr data-{key}="{value}".*?</tr>', page.text, re.S)
    assert found is not None, (key, value)
    return found.group(0)


async def test_the_page_shows_endpoints_and_deliveries_with_their_attempts(opened: Log) -> None:
    page = await opened.page()
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert '<a href="/dashboard/postbacks" aria-current="page">Postbacks</a>' in page.text
    assert "Example &lt;b&gt;Deals&lt;/b&gt;" in page.text
    assert opened.secret and opened.secret not in page.text  # never a secret
    webhook = row(page, "endpoint", opened.webhook)
    assert WEBHOOK_URL in webhook and "order_completed, order_refunded" in webhook
    assert 'data-active="true"' in webhook and "enabled" in webhook
    assert "Send a test event" in webhook
    postback = row(page, "endpoint", opened.postback)
    assert html.escape(POSTBACK_URL) in postback  # & escaped
    # Newest first.
    assert await opened.shown() == [opened.pending, opened.delivered, opened.failed]
    failed = row(page, "delivery", opened.failed)
    event_id = await opened.pool.fetchval(
        "SELECT event_id FROM postback_deliveries WHERE id = $1", opened.failed
    )
    assert f">{event_id}</td>" in failed and ">test</td>" in failed
    assert "failed: retries ran out" in failed and "HTTP 500: answered 500" in failed
    assert '<details class="attempts"><summary>2 attempts in the log</summary>' in failed
    assert 'data-outcome="retry" data-status-code="500"' in failed and "41 ms" in failed
    assert "failed, gave up · HTTP 500 · 57 ms" in failed
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\ufffdevil" in failed  # escaped, no override
    assert "<script>" not in page.text and "\u202e" not in page.text
    assert 'data-action="replay"' in failed
    delivered = row(page, "delivery", opened.delivered)
    assert "delivered · HTTP 200 · 12 ms" in delivered and ">delivered</td>" in delivered
    pending = row(page, "delivery", opened.pending)
    assert "pending, next attempt" in pending and 'data-action="replay"' not in pending
    assert '<td data-label="Attempts" class="wrap attempts-cell">0</td>' in pending
    # A disabled endpoint says so.
    await opened.pool.execute(
        "UPDATE postback_endpoints SET disabled_at = now() WHERE id = $1", opened.postback
    )
    again = row(await opened.page(), "endpoint", opened.postback)
    assert 'data-active="false"' in again and "disabled since" in again


async def test_the_filters_and_pages_narrow_the_log(opened: Log) -> None:
    assert await opened.shown(status="failed") == [opened.failed]
    assert await opened.shown(status="delivered", event="test") == [opened.delivered]
    assert await opened.shown(endpoint=opened.postback) == [opened.pending, opened.delivered]
    assert await opened.shown(endpoint=opened.webhook, status="pending") == []
    empty = await opened.page(endpoint=opened.webhook, status="pending")
    assert "No delivery matches these filters." in empty.text
    assert await opened.shown(before=opened.pending) == [opened.delivered, opened.failed]
    assert await opened.shown(event="order_completed") == []
    # Empty fields (the form's "any") are no filter; the form shows what is chosen.
    assert len(await opened.shown(status="", event="", endpoint="")) == 3
    chosen = await opened.page(status="failed")
    assert '<option value="failed" selected>failed</option>' in chosen.text
    # More than a page: the next page's link keeps the filters.
    more = [
        await queued_test_event(opened.pool, opened.postback, opened.publisher_id)
        for _ in range(25)
    ]
    first = await opened.page(endpoint=opened.postback)
    ids = [int(i) for i in re.findall(r'<tr data-delivery="(\d+)"', first.text)]
    assert ids == sorted(more, reverse=True)[:PAGE_SIZE]
    found = re.search(r'<a id="next-page" href="([^"]+)"', first.text)
    assert found is not None
    link = html.unescape(found.group(1))
    assert f"endpoint={opened.postback}" in link and f"before={ids[-1]}" in link
    second = await opened.client.get(link)
    rest = [int(i) for i in re.findall(r'<tr data-delivery="(\d+)"', second.text)]
    assert rest == [opened.pending, opened.delivered] and 'id="next-page"' not in second.text
    assert 'id="newest"' in second.text


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"status": "sent"}, "expected one of pending, delivered, failed"),
        ({"event": "order_paid"}, "expected one of order_attributed"),
        ({"endpoint": "abc"}, "expected an endpoint's id"),
        ({"endpoint": "OTHER"}, "you have no endpoint"),
        ({"before": "-1"}, "expected the id of the last delivery shown"),
        ({"done": "everything"}, "expected one of replayed"),
        ({"status": ["failed", "pending"]}, "'status' given twice"),
    ],
)
async def test_a_bad_filter_answers_a_400_page_in_words(
    opened: Log, params: dict[str, Any], words: str
) -> None:
    if params.get("endpoint") == "OTHER":
        other, _ = await new_publisher(opened.pool, "Someone else")
        params = {"endpoint": (await new_endpoint(opened.pool, other, "webhook", WEBHOOK_URL))[0]}
    answer = await opened.client.get("/dashboard/postbacks", params=params)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")
    assert words in html.unescape(answer.text)


async def test_replaying_one_delivery_queues_it_again_with_its_audit_entry(opened: Log) -> None:
    answer = await opened.post(
        f"/deliveries/{opened.failed}/replay", status="failed", endpoint=opened.webhook
    )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith("/dashboard/postbacks?")
    assert "status=failed" in location and f"endpoint={opened.webhook}" in location
    assert f"done=replayed&delivery={opened.failed}" in location
    assert await status_of(opened.pool, opened.failed) == ("pending", 0)
    shown = await opened.client.get(location)
    assert f"Delivery {opened.failed} is queued again, with the same event id" in shown.text
    key_id = await opened.pool.fetchval(
        "SELECT id FROM api_keys WHERE publisher_id = $1", opened.publisher_id
    )
    [entry] = await replay_entries(opened.pool, opened.publisher_id)
    assert entry["actor"] == f"dashboard:key:{key_id}"
    assert entry["target_id"] == str(opened.failed)
    assert (entry["before"], entry["after"]) == ('{"status": "failed"}', '{"status": "pending"}')
    # Pending now: a second replay changes nothing and says so.
    again = await opened.post(f"/deliveries/{opened.failed}/replay")
    assert "done=pending" in again.headers["location"]
    said = await opened.client.get(again.headers["location"])
    assert "is pending already" in said.text
    assert len(await replay_entries(opened.pool, opened.publisher_id)) == 1


async def test_replaying_the_failed_ones_follows_the_filters(opened: Log) -> None:
    other = await queued_test_event(
        opened.pool,
        opened.postback,
        opened.publisher_id,
        Attempt(Outcome.failed, 3000, None, None, "timed out"),
    )
    answer = await opened.post("/replay-failed", endpoint=opened.postback, before=opened.failed)
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert "done=replayed_failed&count=1" in location and "before" not in location
    assert await status_of(opened.pool, other) == ("pending", 0)
    assert (await status_of(opened.pool, opened.failed))[0] == "failed"  # another endpoint's
    assert await status_of(opened.pool, opened.delivered) == ("delivered", 1)  # not failed
    assert "1 failed delivery queued again." in (await opened.client.get(location)).text
    [entry] = await replay_entries(opened.pool, opened.publisher_id)
    assert entry["target_id"] == "matching"
    assert '"endpoint_id": ' + str(opened.postback) in entry["after"]
    assert '"status": "failed"' in entry["after"] and '"replayed": 1' in entry["after"]
    everything = await opened.post("/replay-failed")
    assert "count=1" in everything.headers["location"]
    assert await status_of(opened.pool, opened.failed) == ("pending", 0)
    none_left = await opened.post("/replay-failed")
    said = await opened.client.get(none_left.headers["location"])
    assert "No failed delivery to replay: nothing was changed." in said.text
    assert len(await replay_entries(opened.pool, opened.publisher_id)) == 2


async def test_a_test_event_is_queued_for_the_endpoint(opened: Log) -> None:
    answer = await opened.post(f"/endpoints/{opened.postback}/test", before=opened.failed)
    assert answer.status_code == 303, answer.text
    found = re.search(r"done=test&delivery=(\d+)", answer.headers["location"])
    assert found is not None
    made = int(found.group(1))
    row_ = await opened.pool.fetchrow(
        "SELECT endpoint_id, publisher_id, event, status FROM postback_deliveries WHERE id = $1",
        made,
    )
    assert row_ is not None
    assert dict(row_) == {
        "endpoint_id": opened.postback,
        "publisher_id": opened.publisher_id,
        "event": "test",
        "status": "pending",
    }
    shown = await opened.client.get(answer.headers["location"])
    assert f"A test event is queued as delivery {made}" in shown.text
    assert "before" not in answer.headers["location"]  # the newest page: it is the newest
    assert (await opened.shown())[0] == made


async def deliveries_count(pool: Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM postback_deliveries")
    return count


async def test_a_form_without_the_sessions_token_is_refused(opened: Log) -> None:
    before = await deliveries_count(opened.pool)
    for path in (
        f"/deliveries/{opened.failed}/replay",
        "/replay-failed",
        f"/endpoints/{opened.webhook}/test",
    ):
        for data in ({}, {"csrf": "forged"}):
            answer = await opened.client.post(f"/dashboard/postbacks{path}", data=data)
            assert answer.status_code == 403, (path, data)
            assert "Nothing was changed" in answer.text
    assert (await status_of(opened.pool, opened.failed))[0] == "failed"
    assert await deliveries_count(opened.pool) == before
    assert await replay_entries(opened.pool, opened.publisher_id) == []


async def test_another_publishers_ids_answer_404_and_change_nothing(opened: Log) -> None:
    other, _ = await new_publisher(opened.pool, "Someone else")
    endpoint, _ = await new_endpoint(opened.pool, other, "webhook", WEBHOOK_URL)
    theirs = await queued_test_event(
        opened.pool, endpoint, other, Attempt(Outcome.failed, 9, 500, "no", "answered 500")
    )
    before = await deliveries_count(opened.pool)
    for path, words in (
        (f"/deliveries/{theirs}/replay", f"you have no delivery {theirs}"),
        (f"/endpoints/{endpoint}/test", f"you have no endpoint {endpoint}"),
        ("/deliveries/99999999999/replay", "you have no delivery 99999999999"),
        ("/deliveries/abc/replay", "you have no delivery 'abc'"),
    ):
        answer = await opened.post(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html")
        assert words in html.unescape(answer.text)
    assert (await status_of(opened.pool, theirs))[0] == "failed"
    assert await deliveries_count(opened.pool) == before
    assert await replay_entries(opened.pool, other) == []
    assert theirs not in await opened.shown()


async def test_without_a_session_every_address_goes_to_the_sign_in(
    app_client: httpx.AsyncClient, pool: Pool
) -> None:
    publisher_id, _ = await new_publisher(pool, "Signed out")
    endpoint, _ = await new_endpoint(pool, publisher_id, "webhook", WEBHOOK_URL)
    delivery = await queued_test_event(pool, endpoint, publisher_id)
    before = await deliveries_count(pool)
    for method, path in (
        ("GET", "/dashboard/postbacks"),
        ("POST", f"/dashboard/postbacks/deliveries/{delivery}/replay"),
        ("POST", "/dashboard/postbacks/replay-failed"),
        ("POST", f"/dashboard/postbacks/endpoints/{endpoint}/test"),
    ):
        answer = await app_client.request(method, path, data={"csrf": "x"})
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/dashboard/login"
    assert await deliveries_count(pool) == before


async def test_no_endpoints_said_in_words_and_a_wrong_method_answers_405(
    app_client: httpx.AsyncClient, pool: Pool
) -> None:
    _, key = await new_publisher(pool, "Nothing yet")
    await sign_in(app_client, key)
    page = await app_client.get("/dashboard/postbacks")
    assert page.status_code == 200
    assert "No endpoints yet: create one with the API" in page.text
    assert "No deliveries yet." in page.text
    wrong = await app_client.get("/dashboard/postbacks/replay-failed")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.headers["content-type"].startswith("text/html")
