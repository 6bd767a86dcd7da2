"""Phase *replicas* (``--phases replicas``, not in the default run): what replica
acknowledgement costs the redirect.

The run's Redis gets one replica (a second redis-server with the same ``redis.conf``,
replicating it over loopback, pinned with Redis and Postgres on wrk's core). Two clicktrack
servers, the same but for ``CLICKTRACK_REDIS_MIN_REPLICAS`` (0: no WAIT; 1: WAIT 1 appended
to each group-commit batch, ``CLICKTRACK_REDIS_REPLICA_TIMEOUT_MS`` at its default), are
measured on the phase 1 requests in interleaved rounds; the ratio of the two, and how many
batches the replica did not confirm in time (each one spooled: a measured configuration
that spools is not the one meant).
"""

from __future__ import annotations

import http.client
import time
from typing import TYPE_CHECKING, Any

import redis
from devstack import servers

from bench.harness import Server, median_row, say
from bench.services import REDIS_CONF, BenchError, free_port

if TYPE_CHECKING:
    from bench.run import Bench

SHORTFALLS = "clicktrack_commit_replica_shortfalls_total"
SPOOLED = "clicktrack_clicks_spooled_total"


def start_replica(bench: Bench) -> None:
    """A replica of the run's Redis, counted and pinned with it (``Stores.replica``)."""
    stores = bench.stores
    if stores.replica is not None:
        return
    config = REDIS_CONF if REDIS_CONF.is_file() else None
    replica = servers.start_redis(bench.workdir / "replica", free_port(), config=config)
    stores.replica = replica
    assert stores.redis is not None
    with redis.Redis(port=replica.port) as client:
        client.execute_command("REPLICAOF", "127.0.0.1", str(stores.redis.port))
    deadline = time.monotonic() + 30
    while not _in_sync(stores.redis_url):
        if time.monotonic() > deadline:
            raise BenchError("the replica did not catch up with the run's Redis in 30 s")
        time.sleep(0.1)
    say(f"a replica of the run's Redis on port {replica.port}, in sync")


def _in_sync(url: str) -> bool:
    with redis.Redis.from_url(url) as client:
        info = client.info("replication")
    replica = info.get("slave0")
    return isinstance(replica, dict) and replica.get("state") == "online"


def metric_values(port: int, names: tuple[str, ...]) -> dict[str, float]:
    """Samples of a server's /metrics (0 for those absent)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    found = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    return found


def phase_replicas(bench: Bench) -> None:
    start_replica(bench)
    servers_ = [_start_server(bench, n) for n in (0, 1)]
    bench.others_on_wrk_cpu(True)
    found = bench.rounds(servers_, pinned=True)
    bench.others_on_wrk_cpu(False)
    without, with_ = (median_row(s.label, found[s.key]) for s in servers_)
    ratio = with_["rps"] / without["rps"] if without["rps"] else 0.0
    counts = _counts(servers_[1])
    bench.summary["replicas"] = {"without": without, "with": with_, "ratio": ratio, **counts}
    bench.check_durability([*found[servers_[0].key], *found[servers_[1].key]])
    bench.stop_servers([s.key for s in servers_])
    say(
        f"replicas: WAIT 1 / no WAIT: {ratio:.3f}x req/s; p99 {without['p99_ms']:.2f} -> "
        f"{with_['p99_ms']:.2f} ms; batches not confirmed in time: {counts['shortfalls']:.0f}"
    )


def _start_server(bench: Bench, min_replicas: int) -> Server:
    key = f"replicas_{min_replicas}"

    def env(port: int) -> dict[str, str]:
        return bench.app_env(key, port, CLICKTRACK_REDIS_MIN_REPLICAS=str(min_replicas))

    return bench.start_server(
        key,
        f"clicktrack, 1 replica, {'WAIT 1' if min_replicas else 'no WAIT'}",
        [["-m", "app.serve"]],
        cpus=bench.options.server_cpu,
        env=env,
        clicktrack=True,
    )


def _counts(server: Server) -> dict[str, Any]:
    found = metric_values(server.port, (SHORTFALLS, SPOOLED))
    return {"shortfalls": int(found[SHORTFALLS]), "spooled": int(found[SPOOLED])}
