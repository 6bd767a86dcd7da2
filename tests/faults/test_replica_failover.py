"""Scenario 18: a Redis primary lost under load, its replica promoted, with and without
replica acknowledgement (``CLICKTRACK_REDIS_MIN_REPLICAS``; docs/reliability.md).

The scenario has a Redis of its own: a primary (the shipped ``redis.conf``) and a replica,
two redis-server processes (tests/support/replicas.py). The web app and the flushers reach
"the primary" through a TCP proxy (``tests/support/proxy.py``), as they would through a
service address that a failover moves: after the promotion the proxy resets every
connection and sends new ones to the promoted replica. The replica replicates through a
second proxy, the replication link.

Under load, with the flushers held behind (Postgres takes no insert meanwhile: a click
already stored is not lost with the primary, and on loopback they store one within
milliseconds): the replication link is cut (a partition between primary and replica: what
a lagging replica is, taken to its end), the primary is SIGKILLed, it stays gone for a while
(a failover's detection time), the replica is promoted (``REPLICAOF NO ONE``), the proxy
moves, and a new replica of the new primary starts (the lost node back as a replica, as a
failover manager reconfigures it). Without WAIT, every click answered while the link was cut
was only on the lost primary: the row counts them as lost. With ``MIN_REPLICAS=1`` those
batches were not confirmed, went to the spool and were replayed into the new primary once
it had a replica: nothing lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.faults.harness import REDIS_CONF, Faults, Row, Scenario
from tests.support.proxy import CuttableProxy
from tests.support.replicas import RedisProcess, ReplicatedRedis

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]


@dataclass
class Failover:
    """The scenario's Redis: primary, replica, the proxies in front of the primary (for the
    app) and between them (replication), and the replica started after the promotion."""

    nodes: ReplicatedRedis
    front: CuttableProxy
    link: CuttableProxy
    late_replica: RedisProcess | None = None

    async def promote(self) -> None:
        """The replica becomes the primary; the app's connections move to it."""
        replica = self.nodes.replica
        await asyncio.to_thread(replica.promote)
        self.front.sever()  # open connections to the lost primary: reset
        self.front.target = ("127.0.0.1", replica.port)
        self.front.heal()

    async def new_replica(self, sc: Scenario) -> None:
        """A replica of the new primary, with an empty folder (the lost host, rebuilt)."""
        self.late_replica = await asyncio.to_thread(
            RedisProcess,
            "replica2",
            sc.folder,
            [str(REDIS_CONF), "--replicaof", "127.0.0.1", str(self.nodes.replica.port)],
        )


@pytest.fixture
async def failover(faults: Faults) -> AsyncIterator[Failover]:
    conf = [str(REDIS_CONF)]
    nodes = await asyncio.to_thread(ReplicatedRedis, faults.root / "replicated", conf)
    front = CuttableProxy("127.0.0.1", nodes.primary.port)
    link = CuttableProxy("127.0.0.1", nodes.primary.port)
    state = Failover(nodes, front, link)
    try:
        await front.start()
        await link.start()
        await asyncio.to_thread(nodes.replica.replicate_from, link.port)
        await asyncio.to_thread(nodes.wait_in_sync)
        yield state
    finally:
        await front.stop()
        await link.stop()
        if state.late_replica is not None:
            await asyncio.to_thread(state.late_replica.stop)
        await asyncio.to_thread(nodes.stop)


async def _shortfalls(sc: Scenario) -> int:
    samples = await sc.web_metrics()
    return int(samples.get("clicktrack_commit_replica_shortfalls_total", 0))


async def run_failover(faults: Faults, failover: Failover, min_replicas: int) -> Row:
    name = f"18. primary SIGKILLed, replica promoted (MIN_REPLICAS={min_replicas})"
    async with faults.scenario(name) as sc:
        sc.redis_url = failover.front.url()
        sc.extra_env = {"CLICKTRACK_REDIS_MIN_REPLICAS": str(min_replicas)}
        await asyncio.gather(sc.start_web(), sc.start_flusher("f1"))
        async with sc.load() as load:
            await sc.warmup()
            # The flushers fall behind (Postgres takes no insert), as they do whenever it
            # is slow: on loopback they store a click within milliseconds otherwise, and a
            # click already in Postgres is not lost with the primary.
            async with sc.inserts_held():
                failover.link.sever()
                sc.mark("replication cut")
                answered_before_cut = len(load.stats.accepted)
                await sc.outage(0.5)
                failover.nodes.primary.kill()
                sc.mark("primary killed")
                answered_in_cut = len(load.stats.accepted) - answered_before_cut
                await sc.outage(0.5)
                await failover.promote()
                sc.mark("replica promoted")
                await failover.new_replica(sc)
                sc.mark("new replica")
            await sc.tail()
        shortfalls = await _shortfalls(sc)
        row = await sc.check()
        sc.note(
            f"flushers held; link cut {sc.mode.outage_s / 2:g} s before the kill, promoted "
            f"{sc.mode.outage_s / 2:g} s after; {answered_in_cut} clicks answered while cut; "
            f"batches not confirmed by a replica: {shortfalls}"
        )
        row.note = "; ".join(sc.notes)
    return row


async def test_18_primary_lost_with_replica_acknowledgement(
    faults: Faults, failover: Failover
) -> None:
    row = await run_failover(faults, failover, 1)
    row.assert_exactly_once()


async def test_18_primary_lost_without_replica_acknowledgement(
    faults: Faults, failover: Failover
) -> None:
    """What WAIT is for: the same failover loses what the replica had not received."""
    row = await run_failover(faults, failover, 0)
    # The replica got nothing while the link was cut: those clicks were on the lost primary
    # only.
    row.assert_only_losses()
