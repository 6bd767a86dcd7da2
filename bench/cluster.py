"""Phase *cluster* (``--phases cluster``, not in the default run): the redirect on a Redis
Cluster against the same on one Redis.

A local cluster of 3 primaries and 3 replicas (six redis-server processes on loopback ports,
``tests/support/redis_cluster.py``, the fault suite's) is started next to the run's Redis and
pinned with it, Postgres and wrk on wrk's core. Two clicktrack servers, the same but for the
Redis: the run's one Redis with one stream shard (the default), the same Redis with
``SHARDS`` stream shards (what sharding alone costs), and the cluster (``redis+cluster://``)
with ``SHARDS`` stream shards spread over its three primaries (each batch's clicks grouped by
node: one write per node, ``app/core/resp_cluster.py``); measured on the phase 1 requests in
interleaved rounds, with the ratio of the cluster to one Redis. Every 302 must be a stream
entry (summed over the shards). Nothing is flushed meanwhile.

On one machine this measures what the cluster client costs the web process (the same
server core, one to three writes per batch instead of one), not what a cluster adds: its
primaries share one core here, as the one Redis does.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import redis
from redis.cluster import RedisCluster

from bench.harness import Server, median_row, say
from bench.services import BenchError
from tests.support.redis_cluster import RedisClusterHarness, available

if TYPE_CHECKING:
    from bench.harness import Run
    from bench.run import Bench

SHARDS = 6


def start_cluster(bench: Bench) -> RedisClusterHarness:
    """The local cluster, its processes counted as the run's own (``Stores.cluster``)."""
    if not available():
        raise BenchError("phase cluster needs redis-server and redis-cli (Redis 7)")
    stores = bench.stores
    if stores.cluster is None:
        harness = RedisClusterHarness(bench.workdir / "cluster")
        harness.start()
        stores.cluster = harness
        say(f"a Redis Cluster of 3 primaries and 3 replicas: {harness.url}")
    return stores.cluster


def phase_cluster(bench: Bench) -> None:
    cluster = start_cluster(bench)
    servers = [
        _start_server(bench, "cluster_single", "one Redis, 1 stream shard", None, 1),
        _start_server(bench, "cluster_sharded", f"one Redis, {SHARDS} stream shards", None, SHARDS),
        _start_server(
            bench, "cluster_cluster", f"cluster, 3 primaries, {SHARDS} shards", cluster.url, SHARDS
        ),
    ]
    bench.others_on_wrk_cpu(True)
    client = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    try:
        found = _rounds(bench, servers, {servers[1].key: bench.redis, servers[2].key: client})
    finally:
        client.close()
        bench.others_on_wrk_cpu(False)
    rows = [median_row(server.label, found[server.key]) for server in servers]
    one, sharded, many = rows
    ratio = many["rps"] / one["rps"] if one["rps"] else 0.0
    bench.summary["cluster"] = {
        "single": one,
        "sharded": sharded,
        "cluster": many,
        "ratio": ratio,
        "shards": SHARDS,
    }
    bench.check_durability([run for runs in found.values() for run in runs])
    bench.stop_servers([server.key for server in servers])
    say(
        f"cluster: cluster / one Redis: {ratio:.3f}x req/s; p99 {one['p99_ms']:.2f} -> "
        f"{many['p99_ms']:.2f} ms"
    )


def _start_server(bench: Bench, key: str, label: str, url: str | None, shards: int) -> Server:
    def env(port: int) -> dict[str, str]:
        extra = {"CLICKTRACK_STREAM_SHARDS": str(shards)}
        if url is not None:
            extra["CLICKTRACK_REDIS_URL"] = url
        return bench.app_env(key, port, **extra)

    # clicktrack=False with several shards: the harness counts the entries of shard 0 only.
    return bench.start_server(
        key,
        f"clicktrack, {label}",
        [["-m", "app.serve"]],
        cpus=bench.options.server_cpu,
        env=env,
        clicktrack=shards == 1,
    )


def _rounds(
    bench: Bench, servers: list[Server], counters: dict[str, redis.Redis | RedisCluster]
) -> dict[str, list[Run]]:
    """Warm-ups, then ``runs`` rounds of one run per server. A server in ``counters`` (its
    Redis) has its shards' streams emptied before each run and counted after it (the
    harness counts one shard's)."""
    for server in servers:
        say(f"warming up {server.label}")
        bench.wrk_run(server, bench.options.warmup_s, pinned=True)
    streams = [bench.keys.for_shard(shard).clicks_stream for shard in range(SHARDS)]
    found: dict[str, list[Run]] = {server.key: [] for server in servers}
    for round_ in range(bench.options.runs):
        for server in servers:
            counter = counters.get(server.key)
            if counter is not None:
                for stream in streams:
                    counter.unlink(stream)
            run = bench.measure(server, round_, pinned=True)
            if counter is not None:
                time.sleep(0.5)  # requests wrk gave up on at its deadline are still answered
                run.stream_entries = _entries(counter, streams)
                say(f"  stream entries {run.stream_entries:,} for {run.result.good:,} 302s")
            found[server.key].append(run)
    return found


def _entries(client: redis.Redis | RedisCluster, streams: list[str]) -> int:
    try:
        return sum(int(client.xlen(stream)) for stream in streams)
    except redis.RedisError as exc:
        raise BenchError(f"counting the shards' stream entries: {exc}") from exc
