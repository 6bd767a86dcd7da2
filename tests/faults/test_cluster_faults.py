"""Scenarios 19 to 21: the pipeline on a real local Redis Cluster (3 primaries, 3 replicas,
``tests/support/redis_cluster.py``), under load, with the fault suite's count.

Each scenario runs the web app (``python -m app.serve``) and one flusher process per stream
shard (6 shards: ``{0}``..``{5}`` hash to slots of all three primaries, 1, 3 and 2 of them),
the load makes every click a new session (no cookies), so the clicks spread over every
shard. Then, while the load runs:

- 19: the primary holding the most shards is SIGKILLed and the cluster promotes its replica
  (after ``cluster-node-timeout``), then the killed node is started again (it rejoins as the
  new primary's replica). Twice, with ``CLICKTRACK_REDIS_MIN_REPLICAS=1`` and ``0``. To
  open the window a failover can lose (on loopback a replica is a fraction of a millisecond
  behind), the victim's replication is cut first (``cut_replication``: it refuses its
  replica's PSYNC/SYNC) and the flushers are held behind (inserts locked), as in scenario 18.
- 20: the slot of a busy shard's stream (its stream, dead letters, parked entries and session
  windows) is moved to another primary (SETSLOT/MIGRATE, as ``redis-cli --cluster reshard``).
- 21: the flusher of one shard is SIGKILLed holding a batch, a successor is started for the
  shard under another name and claims its pending entries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

from tests.faults.harness import CLAIM_IDLE_MS, Faults, Row, Scenario
from tests.support.processes import Child
from tests.support.redis_cluster import REDIS_SERVER, Node, RedisClusterHarness, available

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

SHARDS = 6
SHORTFALLS = "clicktrack_commit_replica_shortfalls_total"


@pytest.fixture(scope="module")
def cluster(faults: Faults) -> Iterator[RedisClusterHarness]:
    """A cluster of this module's own: its scenarios kill and move what others rely on."""
    if not available():
        pytest.skip(f"no {REDIS_SERVER} (Redis 7) on this machine: no local Redis Cluster")
    harness = RedisClusterHarness(faults.root / "cluster")
    harness.start()
    try:
        yield harness
    finally:
        harness.stop()


async def start(sc: Scenario, cluster: RedisClusterHarness, min_replicas: int = 0) -> None:
    """The web app and one flusher per shard (``f<shard>``), on the cluster."""
    sc.redis_url = cluster.url
    sc.shards = SHARDS
    sc.fresh_sessions = True
    sc.extra_env = {
        "CLICKTRACK_STREAM_SHARDS": str(SHARDS),
        "CLICKTRACK_REDIS_MIN_REPLICAS": str(min_replicas),
    }
    await asyncio.gather(
        sc.start_web(),
        *(flusher(sc, shard, f"f{shard}") for shard in range(SHARDS)),
    )


async def flusher(sc: Scenario, shard: int, name: str) -> Child:
    return await sc.start_flusher(name, env={"CLICKTRACK_FLUSHER_SHARDS": str(shard)})


def slot_of(sc: Scenario, shard: int) -> int:
    return key_slot(sc.keys.for_shard(shard).clicks_stream.encode())


def shards_by_primary(sc: Scenario, cluster: RedisClusterHarness) -> dict[int, list[int]]:
    """Primary port -> the shards whose stream it holds."""
    owners: dict[int, list[int]] = {}
    for shard in range(SHARDS):
        owners.setdefault(cluster.owner_of_slot(slot_of(sc, shard)).port, []).append(shard)
    return owners


async def until(check: object, within: float, what: str) -> None:
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# --- 19: a primary lost ----------------------------------------------------------------------


def replica_of(cluster: RedisClusterHarness, primary: Node) -> Node:
    with primary.client() as client:
        info = client.info("replication")
    return cluster.node(int(info["slave0"]["port"]))


def cut_replication(primary: Node) -> None:
    """The primary drops its replicas' links and refuses them again (their PSYNC and SYNC
    are taken from the user they connect as): a replica cut off, as by a partition, while
    the app's connections go on. The node's next start forgets it (ACLs are not saved)."""
    with primary.client() as client:
        client.execute_command("ACL", "SETUSER", "default", "-psync", "-sync")
        client.execute_command("CLIENT", "KILL", "TYPE", "replica")


async def run_primary_kill(faults: Faults, cluster: RedisClusterHarness, min_replicas: int) -> Row:
    name = f"19. cluster: primary SIGKILLed, replica promoted (MIN_REPLICAS={min_replicas})"
    async with faults.scenario(name) as sc:
        await start(sc, cluster, min_replicas)
        owners = shards_by_primary(sc, cluster)
        port, shards = max(owners.items(), key=lambda item: len(item[1]))
        victim = cluster.node(port)
        replica = replica_of(cluster, victim)
        await asyncio.to_thread(cluster.wait_replicas_caught_up)  # the last run's node synced
        async with sc.load() as load:
            await sc.warmup()
            async with sc.inserts_held():
                await asyncio.to_thread(cut_replication, victim)
                sc.mark("replication cut")
                before = len(load.stats.accepted)
                await sc.outage(0.5)
                answered_in_cut = len(load.stats.accepted) - before
                killed_at = time.monotonic()
                promoted = await asyncio.to_thread(cluster.kill_primary, victim)
                promotion_s = time.monotonic() - killed_at
                sc.mark("primary killed, replica promoted")
                await asyncio.to_thread(cluster.restart, victim)
                sc.mark("killed node back as a replica")
            await sc.tail()
        shortfalls, spooled = await shortfalls_of(sc), await spooled_clicks(sc)
        row = await sc.check()
        sc.note(
            f"shards {shards} on the killed primary; replication cut "
            f"{sc.mode.outage_s / 2:g} s before the kill, {answered_in_cut} clicks answered "
            f"meanwhile; {'its replica' if promoted.port == replica.port else 'another node'} "
            f"promoted by the cluster {promotion_s:.1f} s after the kill; "
            f"flushers held; batches not confirmed by a replica: {shortfalls}, clicks "
            f"spooled: {spooled}"
        )
        row.note = "; ".join(sc.notes)
    return row


async def test_19_cluster_primary_lost_with_replica_acknowledgement(
    faults: Faults, cluster: RedisClusterHarness
) -> None:
    row = await run_primary_kill(faults, cluster, 1)
    row.assert_exactly_once()


async def test_19_cluster_primary_lost_without_replica_acknowledgement(
    faults: Faults, cluster: RedisClusterHarness
) -> None:
    """What WAIT is for, on a cluster: the failover loses what the replica had not got."""
    row = await run_primary_kill(faults, cluster, 0)
    row.assert_only_losses()


async def shortfalls_of(sc: Scenario) -> int:
    samples = await sc.web_metrics()
    return int(sum(v for k, v in samples.items() if k.startswith(SHORTFALLS)))


# --- 20: resharding ---------------------------------------------------------------------------


async def test_20_cluster_slot_moved_under_load(
    faults: Faults, cluster: RedisClusterHarness
) -> None:
    async with faults.scenario("20. cluster: a shard's slot moved under load") as sc:
        await start(sc, cluster)
        shard = 0
        slot = slot_of(sc, shard)
        source = cluster.owner_of_slot(slot)
        target = next(n for n in cluster.primaries() if n.port != source.port)
        async with sc.load() as load:
            await sc.warmup()
            moved = await asyncio.to_thread(cluster.move_slot, slot, target)
            sc.mark("slot moved")
            answered_at_move = len(load.stats.accepted)
            at_move, _ = await asyncio.to_thread(stream_ids, target, sc, shard)
            await sc.outage(0.5)
            await sc.tail()
        spooled = await spooled_clicks(sc)
        row = await sc.check()
        last, delivered = await asyncio.to_thread(stream_ids, target, sc, shard)
        sc.note(
            f"shard {shard}'s slot {slot} moved to another primary ({moved} keys); "
            f"{len(sc.load_stats.accepted) - answered_at_move} clicks answered after the move; "
            f"f{shard} read its stream on the new node from {at_move} to {delivered}; "
            f"clicks spooled {spooled}"
        )
        row.note = "; ".join(sc.notes)
    assert cluster.owner_of_slot(slot).port == target.port
    # The stream grew on its new node, and the shard's flusher read all of it there.
    assert _id(last) > _id(at_move) and delivered == last, (at_move, last, delivered)
    row.assert_exactly_once()


def stream_ids(node: Node, sc: Scenario, shard: int) -> tuple[str, str]:
    """(last entry id, the consumer group's last delivered id) of ``shard``'s stream, asked
    of ``node`` itself (not through the cluster's routing)."""
    keys = sc.keys.for_shard(shard)
    with node.client() as client:
        info = client.xinfo_stream(keys.clicks_stream)
        groups = client.xinfo_groups(keys.clicks_stream)
    delivered = next(
        g["last-delivered-id"] for g in groups if g["name"] == keys.consumer_group.encode()
    )
    return info["last-generated-id"].decode(), delivered.decode()


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


async def spooled_clicks(sc: Scenario) -> int:
    samples = await sc.web_metrics()
    return int(samples.get("clicktrack_clicks_spooled_total", 0))


# --- 21: a flusher lost -----------------------------------------------------------------------


async def test_21_cluster_flusher_killed(faults: Faults, cluster: RedisClusterHarness) -> None:
    async with faults.scenario("21. cluster: one flusher per shard, one SIGKILLed") as sc:
        await start(sc, cluster)
        shard = 1
        victim = next(c for c in sc.children if c.name == f"f{shard}")
        async with sc.load():
            await sc.warmup()
            async with sc.inserts_held():
                await until(lambda: has_pending(sc, victim.name, shard), 30, "a batch read")
                held = await sc.pending_of(victim.name, shard)
                victim.kill()
                sc.mark(f"f{shard} killed")
            successor = await flusher(sc, shard, f"f{shard}b")
            sc.mark(f"f{shard}b started")
            within = CLAIM_IDLE_MS / 1000 + 20
            await until(lambda: no_pending(sc, victim.name, shard), within, "a claim")
            await sc.tail()
        row = await sc.check()
        sc.note(f"f{shard} held {held} entries when killed, claimed by {successor.name}")
        row.note = "; ".join(sc.notes)
    row.assert_exactly_once()


async def has_pending(sc: Scenario, consumer: str, shard: int) -> bool:
    try:
        return await sc.pending_of(consumer, shard) > 0
    except redis.RedisError:
        return False


async def no_pending(sc: Scenario, consumer: str, shard: int) -> bool:
    try:
        return await sc.pending_of(consumer, shard) == 0
    except redis.RedisError:
        return False
