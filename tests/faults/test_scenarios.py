"""The fault scenarios: break something for real under load, heal it, count.

Every scenario ends with the same check (``Row.assert_exactly_once``): every click id that a
302 promised is exactly one row in Postgres, carrying what its request sent; no 5xx; and no
request left without an answer, except where a scenario says why (a web server that is
shutting down refuses new connections). docs/reliability.md describes each scenario and
holds the table of a full run.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
import pytest
import uuid_utils

from app.clicks import record, stream
from app.clicks.record import Click
from tests.faults.harness import CLAIM_IDLE_MS, Faults, Scenario
from tests.faults.stalling_flusher import MARKER
from tests.support.processes import Child
from tests.support.proxy import CuttableProxy

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

# A redirect normally answers in milliseconds; while Redis is frozen a request may wait for
# CLICKTRACK_REDIS_TIMEOUT_MS (250 ms) once for its link and once for its batch. One that
# waited for Redis itself would take about as long as the freeze: the bound is half of it,
# and never under 2 s (a busy two-core machine alone shows pauses of most of a second).
FREEZE_SCALE = 1.5


async def together(*starts: Coroutine[Any, Any, Child]) -> list[Child]:
    """Start processes at the same time; if one fails, the others are stopped too."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(start) for start in starts]
    return [task.result() for task in tasks]


def latency_bound(sc: Scenario) -> float:
    return max(2.0, sc.mode.outage_s * FREEZE_SCALE / 2)


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def holding_a_batch(scenario: Scenario, flusher: Child) -> int:
    """Once ``flusher`` holds delivered, unacked entries (call it while inserts are held, so
    that it cannot finish them), return how many."""
    await until(lambda: _has_pending(scenario, flusher.name), 30, f"{flusher.name} to read")
    return await scenario.pending_of(flusher.name)


async def _has_pending(sc: Scenario, consumer: str) -> bool:
    return await sc.pending_of(consumer) > 0


async def _no_pending(sc: Scenario, consumer: str) -> bool:
    return await sc.pending_of(consumer) == 0


async def claimed_from(sc: Scenario, consumer: str) -> None:
    """Until another flusher has claimed what ``consumer`` held."""
    try:
        await until(lambda: _no_pending(sc, consumer), CLAIM_IDLE_MS / 1000 + 20, "a claim")
    except AssertionError:
        raise AssertionError(
            f"{consumer}'s entries were never claimed; is the other flusher waiting on a lock "
            f"that {consumer}'s open transaction holds? Postgres:\n{await sc.postgres_activity()}"
        ) from None


def assert_bounded_latency(scenario: Scenario) -> None:
    worst = scenario.load_stats.worst_latency_s
    assert worst < latency_bound(scenario), f"{scenario.name}: {scenario.describe_latency()}"


async def test_01_redis_stopped_then_started(faults: Faults) -> None:
    async with faults.scenario("1. Redis stopped, then started") as sc:
        await together(sc.start_web(), sc.start_flusher("f1"))
        async with sc.load():
            await sc.warmup()
            await asyncio.to_thread(faults.redis.stop)
            sc.mark("redis stopped")
            await sc.outage()
            assert sc.spooled_bytes() > 0, "clicks should have gone to the spool"
            await asyncio.to_thread(faults.redis.start)
            sc.mark("redis started")
            await sc.tail()
        row = await sc.check()
    row.assert_exactly_once()


async def test_02_redis_slow(faults: Faults) -> None:
    async with faults.scenario("2. Redis frozen (SIGSTOP), then SIGCONT") as sc:
        await together(sc.start_web(), sc.start_flusher("f1"))
        async with sc.load():
            await sc.warmup()
            faults.redis.pause()
            sc.mark("redis paused")
            await sc.outage(FREEZE_SCALE)
            faults.redis.resume()
            sc.mark("redis resumed")
            await sc.tail()
        row = await sc.check()
    row.assert_exactly_once()
    assert_bounded_latency(sc)


async def test_03_flusher_killed_mid_batch(faults: Faults) -> None:
    async with faults.scenario("3. flusher SIGKILLed holding a batch") as sc:
        _, victim, _ = await together(
            sc.start_web(), sc.start_flusher("f1"), sc.start_flusher("f2")
        )
        async with sc.load():
            await sc.warmup()
            async with sc.inserts_held():
                held = await holding_a_batch(sc, victim)
                victim.kill()  # in the middle of its batch: read, copied, not inserted
                sc.mark("f1 killed")
            sc.note(f"f1 held {held} entries when killed")
            await claimed_from(sc, "f1")
            await sc.tail()
        row = await sc.check()
    row.assert_exactly_once()


async def test_04_postgres_stopped_then_started(faults: Faults) -> None:
    async with faults.scenario("4. Postgres stopped, then started") as sc:
        await together(sc.start_web(), sc.start_flusher("f1"))
        async with sc.load():
            await sc.warmup()
            await asyncio.to_thread(faults.postgres.stop)
            sc.mark("postgres stopped")
            await sc.outage()
            backlog = await sc.stream_length()
            await asyncio.to_thread(faults.postgres.start)
            sc.mark("postgres started")
            sc.note(f"stream held {backlog} entries")
            await sc.tail()
        row = await sc.check()
    row.assert_exactly_once()


async def test_05_web_sigterm_under_load(faults: Faults) -> None:
    async with faults.scenario("5. web app SIGTERM under load") as sc:
        web, *_ = await together(
            sc.start_web(),
            sc.start_web(name="web2", serve=False),  # the replica that stays
            sc.start_flusher("f1"),
        )
        async with sc.load():
            await sc.warmup()
            # A rolling restart: the balancer stops sending to web, which gets SIGTERM with
            # requests in flight on its keep-alive connections.
            web.signal(signal.SIGTERM)
            sc.base_url = sc.web_urls["web2"]
            sc.mark("SIGTERM")
            code = await web.wait(20)
            sc.mark("web exited")
            # uvicorn shuts down gracefully, then re-raises the signal: "killed by SIGTERM".
            assert code in (0, -signal.SIGTERM), f"web exit code {code}:\n{web.tail()}"
            assert "Application shutdown complete" in web.log(), web.tail()
            sc.note("web drained and exited; load went on to web2")
            await sc.tail()
        row = await sc.check()
    # A request that raced the close of its keep-alive connection got no answer: it was
    # never accepted (no 302), so it is not a lost click.
    row.assert_exactly_once(connection_errors_allowed=True)
    assert "Traceback" not in web.log(), web.tail()


async def test_06_redis_killed_and_restarted_from_its_aof(faults: Faults) -> None:
    async with faults.scenario("6. Redis SIGKILLed, restarted (AOF everysec)") as sc:
        await together(sc.start_web(), sc.start_flusher("f1"))
        async with sc.load():
            await sc.warmup()
            before = await sc.stream_length()
            await asyncio.to_thread(faults.redis.kill)
            sc.mark("redis killed")
            await sc.outage(0.5)
            await asyncio.to_thread(faults.redis.start)
            sc.mark("redis started")
            after = await sc.stream_length()
            sc.note(f"stream {before} entries before the kill, {after} after the restart")
            await sc.tail()
        row = await sc.check()
    row.assert_exactly_once()


async def test_07_paused_flusher_resumes_with_a_stale_batch(faults: Faults) -> None:
    async with faults.scenario("7. flusher SIGSTOPped past the claim, SIGCONT") as sc:
        _, stale, other = await together(
            sc.start_web(), sc.start_flusher("f1"), sc.start_flusher("f2")
        )
        async with sc.load():
            await sc.warmup()
            async with sc.inserts_held():
                held = await holding_a_batch(sc, stale)
                stale.pause()  # its INSERT is sent: it goes through, uncommitted, at the release
                sc.mark("f1 paused")
            await claimed_from(sc, "f1")
            sc.mark("f2 claimed")
            # It goes on with the batch it had. Postgres has usually ended its transaction
            # meanwhile (idle_in_transaction_session_timeout, half the claim time): the
            # commit fails and the flusher starts again; else it commits and f2's copy of
            # the batch is absorbed as already there.
            stale.resume()
            sc.mark("f1 resumed")
            await sc.tail()
        row = await sc.check()
        await sc.stop_all()
        f1, f2 = sc.flusher_stats(stale), sc.flusher_stats(other)
        sc.note(
            f"f1 held {held}, claimed by f2; rows written f1 {f1.get('written')} f2 "
            f"{f2.get('written')}, already there f1 {f1.get('duplicates')} "
            f"f2 {f2.get('duplicates')}"
        )
        row.note = "; ".join(sc.notes)
    row.assert_exactly_once()
    assert f2.get("claimed", 0) >= held  # the paused flusher's batch was taken over


async def test_08_flusher_killed_between_commit_and_ack(faults: Faults) -> None:
    async with faults.scenario("8. flusher SIGKILLed between commit and XACK") as sc:
        _, staller, other = await together(
            sc.start_web(),
            sc.start_flusher("f1", module="tests.faults.stalling_flusher"),
            sc.start_flusher("f2"),
        )
        async with sc.load():
            await sc.warmup()
            line = await staller.wait_for_log(MARKER, within=30)
            committed = int(line.split()[-1])
            staller.kill()
            sc.mark("f1 killed")
            await claimed_from(sc, "f1")
            await sc.tail()
        row = await sc.check()
        await sc.stop_all()
        stats = sc.flusher_stats(other)
        sc.note(f"{committed} committed, not acked; f2 found {stats.get('duplicates')} stored")
        row.note = "; ".join(sc.notes)
    row.assert_exactly_once()
    assert stats.get("duplicates", 0) >= committed


async def test_09_long_postgres_outage_trims_nothing_unacknowledged(faults: Faults) -> None:
    async with faults.scenario("9. Postgres down long: the stream grows") as sc:
        await together(sc.start_web(), sc.start_flusher("f1"), sc.start_flusher("f2"))
        async with sc.load() as load, sc.redis() as redis:
            await sc.warmup()
            usual = await sc.stream_length()
            await asyncio.to_thread(faults.postgres.stop)
            sc.mark("postgres stopped")
            accepted_before = len(load.stats.accepted)
            deadline = time.monotonic() + sc.mode.backlog_s
            trimmed = 0
            while time.monotonic() < deadline:
                # What a flusher does after every ack: it must take nothing still needed.
                trimmed += await stream.trim_acknowledged(redis, sc.keys)
                await asyncio.sleep(0.2)
            grown = await sc.stream_length()
            during = len(load.stats.accepted) - accepted_before
            await asyncio.to_thread(faults.postgres.start)
            sc.mark("postgres started")
            await sc.tail()
        sc.note(
            f"stream {usual} entries before, {grown} at the end of the outage "
            f"({during} accepted during it); trims during it took {trimmed}"
        )
        row = await sc.check()
    row.assert_exactly_once()
    # Nothing accepted during the outage could be acked, so none of it may have been trimmed.
    assert grown >= during > usual, (usual, during, grown)


def _malformed() -> list[dict[bytes, bytes]]:
    """Entries that are not clicks, each wrong in its own way."""
    good = {
        "v": 1,
        "id": str(uuid_utils.uuid7()),
        "t": time.time_ns() // 1000,
        "l": 1,
        "code": "bad",
        "p": 1,
        "s": "s",
        "sn": True,
        "m": "GET",
        "f": 0,
    }
    bodies: list[object] = [
        {**good, "v": 2},
        {**good, "id": "not-a-uuid"},
        {**good, "af": "nul\x00inside"},
        {**good, "t": 2**62},
        {**good, "l": 2**63},
        {**good, "f": 1 << 20},
        {**good, "sn": "yes"},
        [1, 2, 3],
    ]
    entries = [{record.STREAM_FIELD: orjson.dumps(body)} for body in bodies]
    entries += [
        {record.STREAM_FIELD: b"not json"},
        {record.STREAM_FIELD: b"\xff\xfe\x00"},
        {record.STREAM_FIELD: b""},
        {b"other": b"no c field"},
    ]
    return entries


async def test_10_malformed_entries_go_to_the_dead_letters(faults: Faults) -> None:
    async with faults.scenario("10. malformed stream entries") as sc:
        await together(sc.start_web(), sc.start_flusher("f1"))
        bad_ids: list[bytes] = []
        async with sc.load(), sc.redis() as redis:
            await sc.warmup()
            # Good and bad interleaved in one round trip: they arrive in the same batch.
            async with redis.pipeline(transaction=True) as pipe:
                for n, bad in enumerate(_malformed()):
                    good = hand_click(sc, f"hand{n}")
                    sc.expect(good.click_id, good.af or "")
                    pipe.xadd(sc.keys.clicks_stream, {record.STREAM_FIELD: record.encode(good)})
                    pipe.xadd(sc.keys.clicks_stream, bad)  # type: ignore[arg-type]
                ids = await pipe.execute()
            bad_ids = ids[1::2]
            await sc.tail()
        row = await sc.check()
        async with sc.redis() as redis:
            dead: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
                sc.keys.dead_letter_stream
            )
            parked: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
                sc.keys.parked_stream
            )
        sc.note(
            f"{len(bad_ids)} malformed entries, {len(dead)} dead letters, "
            f"{len(parked)} parked (an unknown major version)"
        )
        row.note = "; ".join(sc.notes)
    row.assert_exactly_once()
    # `{"v": 2}` (the first) is a record of a newer major: parked, for a flusher that reads
    # it, not dead-lettered; the others are not records at all.
    assert [fields[b"id"] for _, fields in parked] == bad_ids[:1]
    assert sorted(fields[b"id"] for _, fields in dead) == sorted(bad_ids[1:])


def hand_click(sc: Scenario, af: str) -> Click:
    """A valid click of the scenario's link, written by hand (not through a redirect)."""
    return Click(
        click_id=str(uuid_utils.uuid7()),
        ts_us=time.time_ns() // 1000,
        link_id=sc.link_id,
        code=sc.code,
        publisher_id=sc.publisher_id,
        af=af,
        cn="faults",
        cv=None,
        dp=None,
        session_id=uuid.uuid4().hex,
        session_new=True,
        ip="127.0.0.1",
        user_agent="hand-written",
        referer=None,
        accept_language=None,
        method="GET",
        flags=0,
    )


async def test_11_network_to_redis_cut(faults: Faults) -> None:
    proxy = CuttableProxy("127.0.0.1", faults.redis.port)
    await proxy.start()
    try:
        async with faults.scenario("11. network web to Redis cut") as sc:
            await together(sc.start_web(redis_url=proxy.url()), sc.start_flusher("f1"))
            async with sc.load():
                await sc.warmup()
                proxy.sever()
                sc.mark("network cut")
                await sc.outage()
                assert sc.spooled_bytes() > 0, "clicks should have gone to the spool"
                proxy.heal()
                sc.mark("network healed")
                await sc.tail()
            row = await sc.check()
    finally:
        await proxy.stop()
    row.assert_exactly_once()
