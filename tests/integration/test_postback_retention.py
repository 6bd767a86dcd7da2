"""The postback retention on real Postgres (``app/postbacks/retention.py``): what goes, what
stays, in batches, from two processes at once; the CLI's ``prune-postbacks`` and the
sender's hourly pass.

Rows are dated decades back and the cutoffs set just after them, so the counts are exact
whatever the other tests of the session left in the tables (all of it recent)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY

from app.core.db import Conn, Pool
from app.postbacks import outbox, queue, retention, store
from app.postbacks.endpoints import EndpointKind
from app.postbacks.queue import Attempt, Outcome
from app.sender import loop
from app.settings import Settings
from tests.support.orders import new_merchant, new_publisher
from tests.support.processes import child_env
from tests.support.sending import running_sender, sender_settings

OLD = datetime(2000, 6, 1, tzinfo=UTC)
CUTOFF = datetime(2001, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Publisher:
    id: int
    endpoints: tuple[int, int]  # two endpoints, disabled: no sender ever claims their work


@pytest.fixture
async def publisher(pool: Pool) -> Publisher:
    async with pool.acquire() as conn:
        publisher_id = await new_publisher(conn, "Retention test")
        made = []
        for _ in range(2):
            endpoint, _ = await store.create_endpoint(
                conn,
                publisher_id,
                EndpointKind.postback,
                "https://ts.example.com/pb?e={event_id}",
                ["order_completed"],
            )
            made.append(endpoint.id)
        await conn.execute(
            "UPDATE postback_endpoints SET disabled_at = now() WHERE publisher_id = $1",
            publisher_id,
        )
    return Publisher(publisher_id, (made[0], made[1]))


_OUTCOME = {"delivered": Outcome.delivered, "failed": Outcome.failed, "pending": Outcome.retry}


async def delivery(
    conn: Conn,
    publisher: Publisher,
    status: str,
    changed: datetime,
    *,
    attempts: int = 1,
    event_id: uuid.UUID | None = None,
) -> tuple[int, uuid.UUID]:
    """A delivery of a new test event (or a second one of ``event_id``, to the publisher's
    other endpoint) with ``attempts`` attempts, ending ``status``, last changed at ``changed``
    (created then too, with its event). Returns (delivery id, event id)."""
    if event_id is None:
        delivery_id = await outbox.emit_test(conn, publisher.endpoints[0], publisher.id)
        event_id = await conn.fetchval(
            "SELECT event_id FROM postback_deliveries WHERE id = $1", delivery_id
        )
        await conn.execute(
            "UPDATE outbox_events SET created_at = $2 WHERE id = $1", event_id, changed
        )
    else:
        delivery_id = await conn.fetchval(
            """INSERT INTO postback_deliveries (event_id, endpoint_id, publisher_id, event)
               VALUES ($1, $2, $3, 'test') RETURNING id""",
            event_id,
            publisher.endpoints[1],
            publisher.id,
        )
    assert event_id is not None
    for _ in range(attempts):
        await queue.record_attempt(conn, delivery_id, Attempt(_OUTCOME[status], 5, 200), None)
    await conn.execute(
        """UPDATE postback_deliveries
              SET status = $2, created_at = $3, queued_at = $3, updated_at = $3,
                  next_attempt_at = now() + interval '1 year'
            WHERE id = $1""",
        delivery_id,
        status,
        changed,
    )
    await conn.execute(
        "UPDATE postback_attempts SET at = $2 WHERE delivery_id = $1", delivery_id, changed
    )
    return delivery_id, event_id


async def received(
    conn: Conn,
    merchant_id: int,
    at: datetime,
    *,
    replay_of: int | None = None,
    refused: bool = False,
) -> int:
    """A row of the received postbacks' log, as the postback route writes one."""
    row_id: int = await conn.fetchval(
        """INSERT INTO received_postbacks
               (merchant_id, received_at, replay_of, http_status, outcome, error, body, order_ref)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'A-1001') RETURNING id""",
        merchant_id,
        at,
        replay_of,
        422 if refused else 200,
        "refused" if refused else "created",
        "amount must be positive" if refused else None,
        None if refused else b'{"order_id": "A-1001"}',
    )
    return row_id


async def existing(pool: Pool, table: str, ids: list[int] | list[uuid.UUID]) -> set[object]:
    rows = await pool.fetch(f"SELECT id FROM {table} WHERE id = ANY($1)", ids)
    return {r["id"] for r in rows}


async def attempts_of(pool: Pool, delivery_ids: list[int]) -> int:
    found: int = await pool.fetchval(
        "SELECT count(*) FROM postback_attempts WHERE delivery_id = ANY($1)", delivery_ids
    )
    return found


async def test_old_finished_deliveries_go_with_their_attempts_and_events(
    pool: Pool, publisher: Publisher
) -> None:
    recent = datetime.now(UTC)
    async with pool.acquire() as conn:
        delivered, delivered_event = await delivery(conn, publisher, "delivered", OLD, attempts=2)
        failed, failed_event = await delivery(conn, publisher, "failed", OLD, attempts=3)
        # Never a pending delivery, however old, nor its event.
        pending, pending_event = await delivery(conn, publisher, "pending", OLD)
        # Finished, but changed since the cutoff (replayed, say): kept, with its old event.
        replayed, replayed_event = await delivery(conn, publisher, "delivered", OLD)
        await conn.execute(
            "UPDATE postback_deliveries SET updated_at = $2 WHERE id = $1", replayed, recent
        )
        # One event, two deliveries: the old finished one goes, the pending one keeps the event.
        shared_done, shared = await delivery(conn, publisher, "delivered", OLD)
        shared_pending, _ = await delivery(conn, publisher, "pending", OLD, event_id=shared)

        pruned = await retention.prune(conn, CUTOFF)

    assert pruned == retention.Pruned(deliveries=3, attempts=6, events=2, received=0)
    kept = [pending, replayed, shared_pending]
    assert await existing(
        pool, "postback_deliveries", [delivered, failed, shared_done, *kept]
    ) == set(kept)
    assert await attempts_of(pool, [delivered, failed, shared_done]) == 0
    assert await attempts_of(pool, kept) == 3
    events = [delivered_event, failed_event, pending_event, replayed_event, shared]
    assert await existing(pool, "outbox_events", events) == {pending_event, replayed_event, shared}

    # Once the last delivery of the shared event is finished and old too, the event goes.
    await pool.execute(
        "UPDATE postback_deliveries SET status = 'failed' WHERE id = $1", shared_pending
    )
    async with pool.acquire() as conn:
        again = await retention.prune(conn, CUTOFF)
    assert again == retention.Pruned(deliveries=1, attempts=1, events=1, received=0)
    assert await existing(pool, "outbox_events", [shared]) == set()


async def test_old_received_postbacks_go_and_a_later_replay_of_one_stays(pool: Pool) -> None:
    recent = datetime.now(UTC)
    async with pool.acquire() as conn:
        merchant_id, _ = await new_merchant(conn)
        original = await received(conn, merchant_id, OLD)
        refused = await received(conn, merchant_id, OLD, refused=True)
        old_replay = await received(conn, merchant_id, OLD + timedelta(days=1), replay_of=original)
        new_replay = await received(conn, merchant_id, recent, replay_of=original)
        newer = await received(conn, merchant_id, recent)

        pruned = await retention.prune(conn, CUTOFF)

    assert pruned == retention.Pruned(received=3)
    ids = [original, refused, old_replay, new_replay, newer]
    assert await existing(pool, "received_postbacks", ids) == {new_replay, newer}
    # The foreign key's ON DELETE SET NULL: the replay is kept, without its original.
    assert (
        await pool.fetchval("SELECT replay_of FROM received_postbacks WHERE id = $1", new_replay)
        is None
    )


async def test_batches_smaller_than_the_work_loop_until_it_is_done(
    pool: Pool, publisher: Publisher
) -> None:
    async with pool.acquire() as conn:
        merchant_id, _ = await new_merchant(conn)
        finished, events, kept_events = [], [], []
        for n in range(7):
            at = OLD + timedelta(minutes=n)
            found, event = await delivery(conn, publisher, "failed", at, attempts=2)
            finished.append(found)
            events.append(event)
            # Old events that stay, between those that go: the walk of the events steps over
            # them from one batch to the next.
            if n % 3 == 0:
                _, event = await delivery(conn, publisher, "pending", at + timedelta(seconds=1))
                kept_events.append(event)
        logged = [await received(conn, merchant_id, OLD + timedelta(minutes=n)) for n in range(5)]

        pruned = await retention.prune(conn, CUTOFF, batch=2)

    assert pruned == retention.Pruned(deliveries=7, attempts=14, events=7, received=5)
    assert await existing(pool, "postback_deliveries", finished) == set()
    assert await existing(pool, "outbox_events", events + kept_events) == set(kept_events)
    assert await existing(pool, "received_postbacks", logged) == set()
    with pytest.raises(ValueError, match="batch must be 1 or more"):
        await retention.prune(conn, CUTOFF, batch=0)


async def test_two_passes_at_once_share_the_work_without_an_error(
    pool: Pool, publisher: Publisher, database_url: str
) -> None:
    async with pool.acquire() as conn:
        merchant_id, _ = await new_merchant(conn)
        finished = []
        for n in range(40):
            found, _ = await delivery(conn, publisher, "delivered", OLD + timedelta(seconds=n))
            finished.append(found)
        logged: list[int] = []
        for n in range(40):  # chains of replays, each of the one before it
            replay_of = logged[-1] if n % 4 else None
            at = OLD + timedelta(seconds=n)
            logged.append(await received(conn, merchant_id, at, replay_of=replay_of))

    conns = [await asyncpg.connect(database_url) for _ in range(2)]
    try:
        results = await asyncio.gather(*(retention.prune(c, CUTOFF, batch=3) for c in conns))
    finally:
        for c in conns:
            await c.close()

    assert sum(r.deliveries for r in results) == 40
    assert sum(r.attempts for r in results) == 40
    assert sum(r.events for r in results) == 40
    assert sum(r.received for r in results) == 40
    assert await existing(pool, "postback_deliveries", finished) == set()
    assert await existing(pool, "received_postbacks", logged) == set()


async def _cli(database_url: str, tmp_path: Path, *args: str, days: str) -> tuple[int, str, str]:
    env = child_env(
        {"CLICKTRACK_DATABASE_URL": database_url, "CLICKTRACK_POSTBACK_RETENTION_DAYS": days}
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        *args,
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


async def test_the_cli_prints_what_it_deleted(
    pool: Pool, publisher: Publisher, database_url: str, tmp_path: Path
) -> None:
    # 100 years is the longest retention: rows older than that, nobody else's.
    ancient = datetime.now(UTC) - timedelta(days=36_600)
    async with pool.acquire() as conn:
        merchant_id, _ = await new_merchant(conn)
        found, event = await delivery(conn, publisher, "delivered", ancient, attempts=2)
        logged = await received(conn, merchant_id, ancient)

    code, out, err = await _cli(
        database_url, tmp_path, "prune-postbacks", "--days", "36500", days="0"
    )

    assert code == 0, err
    assert out.startswith(
        "deleted 1 delivery (with 2 attempts), 1 event and 1 received postback from before "
    ), out
    assert await existing(pool, "postback_deliveries", [found]) == set()
    assert await existing(pool, "outbox_events", [event]) == set()
    assert await existing(pool, "received_postbacks", [logged]) == set()
    entry = await pool.fetchrow(
        "SELECT actor_role, after FROM audit_log WHERE action = 'postback_log.prune'"
        " ORDER BY id DESC LIMIT 1"
    )
    assert entry is not None and entry["actor_role"] == "operator"
    assert '"postback_deliveries": 1' in entry["after"]

    # Nothing left: nothing deleted, and said so; the setting gives the days when --days is absent.
    code, out, err = await _cli(database_url, tmp_path, "prune-postbacks", days="36500")
    assert code == 0, err
    assert out.startswith(
        "deleted 0 deliveries (with 0 attempts), 0 events and 0 received postbacks"
    )


async def test_the_cli_without_a_retention_is_an_error(database_url: str, tmp_path: Path) -> None:
    code, out, err = await _cli(database_url, tmp_path, "prune-postbacks", days="0")
    assert code == 1 and out == ""
    assert err.strip() == (
        "error: no retention: pass --days N or set CLICKTRACK_POSTBACK_RETENTION_DAYS"
    )
    code, _, err = await _cli(database_url, tmp_path, "prune-postbacks", "--days", "0", days="30")
    assert code == 2 and "must be 1 or more" in err


def _pruned_total(table: str) -> float:
    found = REGISTRY.get_sample_value("clicktrack_postback_rows_pruned_total", {"table": table})
    return found or 0.0


async def test_the_sender_applies_the_retention(
    settings: Settings, pool: Pool, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    ancient = datetime.now(UTC) - timedelta(days=36_600)
    async with pool.acquire() as conn:
        merchant_id, _ = await new_merchant(conn)
        first, _ = await delivery(conn, publisher, "failed", ancient, attempts=2)
        logged = await received(conn, merchant_id, ancient)
    before = _pruned_total("postback_attempts")

    kept_all = sender_settings(settings, postback_retention_days=0)
    async with running_sender(kept_all, pool) as sender:
        assert await sender.apply_retention() is None
    assert await existing(pool, "postback_deliveries", [first]) == {first}

    century = sender_settings(settings, postback_retention_days=36_500)
    async with running_sender(century, pool) as sender:
        pruned = await sender.apply_retention()
    assert pruned == retention.Pruned(deliveries=1, attempts=2, events=1, received=1)
    assert await existing(pool, "received_postbacks", [logged]) == set()
    assert _pruned_total("postback_attempts") == before + 2

    # The loop's own pass, soon after start.
    monkeypatch.setattr(loop, "RETENTION_FIRST_S", 0.01)
    async with pool.acquire() as conn:
        second, _ = await delivery(conn, publisher, "delivered", ancient)
    async with running_sender(century, pool):
        for _ in range(100):
            if not await existing(pool, "postback_deliveries", [second]):
                break
            await asyncio.sleep(0.05)
    assert await existing(pool, "postback_deliveries", [second]) == set()
