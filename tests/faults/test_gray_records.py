"""Gray failures of the click record: entries that are not what this flusher expects, and
record versions side by side during a rolling upgrade (issue 15).

As in test_scenarios.py, every scenario ends with ``Row.assert_exactly_once``: every click id a
302 promised (and every valid click written by hand) is one row carrying what was sent, no
5xx, no request without an answer. docs/reliability.md describes them and holds the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

import orjson
import pytest

from app.clicks import record
from app.clicks.record import Click
from app.clicks.stream import Entry
from tests.faults.harness import Faults, Scenario
from tests.faults.record_versions import MARKER, NEW_FIELD, NEXT_MINOR
from tests.faults.test_scenarios import hand_click
from tests.support.processes import Child

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

# Nothing here breaks Redis or Postgres: a redirect slower than this waited on something.
LATENCY_BOUND_S = 2.0


def _as_version(click: Click, major: int, minor: int) -> bytes:
    """The click as a later release would write it: another version, one more field."""
    body = orjson.loads(record.encode(click))
    body |= {"v": major, "mv": minor, NEW_FIELD: "arm-b", "geo": {"cc": "FR"}}
    return orjson.dumps(body)


async def _side_streams(sc: Scenario) -> tuple[list[bytes], list[bytes]]:
    """The original entry ids in the dead-letter and the parked stream."""
    async with sc.redis() as redis:
        dead: list[Entry] = await redis.xrange(sc.keys.dead_letter_stream)  # type: ignore[assignment]
        parked: list[Entry] = await redis.xrange(sc.keys.parked_stream)  # type: ignore[assignment]
    return [f[b"id"] for _, f in dead], [f[b"id"] for _, f in parked]


def _assert_bounded_latency(sc: Scenario) -> None:
    assert sc.load_stats.worst_latency_s < LATENCY_BOUND_S, sc.describe_latency()


async def test_15_corrupt_and_newer_records_in_the_stream(faults: Faults) -> None:
    """A corrupt record and a newer-minor one (plus one of a newer major) written into the
    stream under load, three times, each next to a valid click in one round trip: redirects
    answer, the newer minor is read and stored, the corrupt one is dead-lettered and counted,
    the newer major is parked (not a dead letter), nothing hangs."""
    async with faults.scenario("15. corrupt and newer records in the stream") as sc:
        web, f1 = await asyncio.gather(sc.start_web(), sc.start_flusher("f1"))
        corrupt_ids: list[bytes] = []
        major_ids: list[bytes] = []
        async with sc.load(), sc.redis() as redis:
            await sc.warmup()
            for n in range(3):
                good, minor, major = (hand_click(sc, f"hand{n}-{kind}") for kind in "gmM")
                corrupt = orjson.loads(record.encode(hand_click(sc, "corrupt"))) | {"l": "seven"}
                for click in (good, minor):
                    sc.expect(click.click_id, click.af or "")
                async with redis.pipeline(transaction=True) as pipe:
                    for payload in (
                        record.encode(good),
                        _as_version(minor, record.MAJOR, record.MINOR + 1),
                        orjson.dumps(corrupt),
                        _as_version(major, record.MAJOR + 1, 0),
                    ):
                        pipe.xadd(sc.keys.clicks_stream, {record.STREAM_FIELD: payload})
                    ids = await pipe.execute()
                corrupt_ids.append(ids[2])
                major_ids.append(ids[3])
                await sc.outage(1 / 3)
            await sc.tail()
        row = await sc.check()
        dead, parked = await _side_streams(sc)
        await sc.stop_all()
        stats = sc.flusher_stats(f1)
        sc.note(
            f"3 newer-minor records stored; {len(dead)} dead letters (f1 counted "
            f"{stats.get('dead_lettered')}), {len(parked)} parked (newer major, f1 counted "
            f"{stats.get('parked')})"
        )
        row.note = "; ".join(sc.notes)
    row.assert_exactly_once()
    assert web.returncode is not None and f1.returncode == 0
    assert (dead, parked) == (corrupt_ids, major_ids)
    assert (stats.get("dead_lettered"), stats.get("parked")) == (3, 3)
    _assert_bounded_latency(sc)


@contextlib.asynccontextmanager
async def _alternating(sc: Scenario, urls: Sequence[str]) -> AsyncIterator[None]:
    """The load goes to each of ``urls`` in turn, a few requests each: two releases of the
    web app side by side, as behind a load balancer during a rollout."""

    async def alternate() -> None:
        n = 0
        while True:
            sc.base_url = urls[n % len(urls)]
            n += 1
            await asyncio.sleep(0.02)

    task = asyncio.create_task(alternate())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _roll_web(sc: Scenario, old: Child, new_name: str, module: str) -> Child:
    """Start the web app ``new_name``, send the load to both, then to it alone, then stop
    ``old`` (once the load has left it: its last requests finish)."""
    new = await sc.start_web(name=new_name, module=module, serve=False)
    async with _alternating(sc, [sc.web_urls[old.name], sc.web_urls[new.name]]):
        await sc.outage(0.5)
    sc.base_url = sc.web_urls[new.name]
    sc.mark(f"load on {new_name}")
    await asyncio.sleep(0.5)
    assert await old.stop() in (0, -15), old.tail()  # uvicorn re-raises SIGTERM
    sc.mark(f"{old.name} stopped")
    return new


async def _until_stored(sc: Scenario, expected: dict[str, str], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not set(expected) <= {click_id for click_id, _ in await sc.rows()}:
        assert time.monotonic() < deadline, f"{sc.name}: not stored in time:\n{sc.logs()}"
        await asyncio.sleep(0.2)


async def test_17_rolling_upgrade_of_the_record_format(faults: Faults) -> None:
    """Two versions of the record format side by side, both ways, under steady load.

    The next release writes minor ``MINOR + 1`` with one more field (``"ab"``) and its
    flusher reads that field (``tests/faults/record_versions.py``: ``tests.faults.next_web``
    and ``tests.faults.next_flusher``, the real processes otherwise):

    1. today's web and flusher;
    2. **old flusher, new web**: the next release's web starts; the load goes to both webs in
       turn, then to the new one only; the old web stops; every click so far (the new web's
       records included) is stored by today's flusher alone;
    3. the next release's flusher joins the consumer group next to today's (both read), then
       today's stops;
    4. **new flusher, old web** (the reverse: the web rolled back): today's web starts, the
       load goes to both in turn, then to today's only; the new web stops.

    Every click stored once, 0 dead letters, 0 parked; the new flusher counts the records of
    each minor it read.
    """
    async with faults.scenario("17. rolling upgrade: two record versions side by side") as sc:
        web_old, _ = await asyncio.gather(sc.start_web(name="web-old"), sc.start_flusher("f-old"))
        async with sc.load() as load:
            await sc.warmup()
            web_new = await _roll_web(sc, web_old, "web-new", "tests.faults.next_web")
            moved = len(load.stats.accepted)
            await sc.tail()
            # Everything so far, the new web's records included, is stored by the old flusher
            # alone before the new one starts.
            by_old = dict(load.stats.accepted)
            await _until_stored(sc, by_old)
            only_new_web = len(by_old) - moved
            f_new = await sc.start_flusher("f-new", module="tests.faults.next_flusher")
            await sc.outage(0.5)
            f_old = next(c for c in sc.children if c.name == "f-old")
            assert await f_old.stop() == 0, f_old.tail()
            sc.mark("f-old stopped")
            await _roll_web(sc, web_new, "web-old-again", "app.serve")
            await sc.tail()
        row = await sc.check()
        dead, parked = await _side_streams(sc)
        await sc.stop_all()
        line = await f_new.wait_for_log(MARKER, within=10)
        minors = {int(k): v for k, v in orjson.loads(line.split(" ", 1)[1]).items()}
        sc.note(
            f"f-old alone stored all {len(by_old)} clicks before f-new started, "
            f"at least {only_new_web} of them from web-new alone (minor {NEXT_MINOR}); f-new read "
            f"{minors.get(record.MINOR, 0)} of minor {record.MINOR} and "
            f"{minors.get(NEXT_MINOR, 0)} of minor {NEXT_MINOR}; "
            f"{len(dead)} dead letters, {len(parked)} parked"
        )
        row.note = "; ".join(sc.notes)
    row.assert_exactly_once()
    assert only_new_web > 0
    assert (dead, parked) == ([], [])
    # Both mixes happened: the new flusher read records of both minors.
    assert minors.get(record.MINOR, 0) > 0 and minors.get(NEXT_MINOR, 0) > 0, minors
    _assert_bounded_latency(sc)
