"""Every Prometheus metric, defined once. Label sets are small and fixed: never a link code,
a tracking string or a user agent as a label.

With several uvicorn workers, prometheus-client's multiprocess mode is used
(``PROMETHEUS_MULTIPROC_DIR``, set by ``app.serve``): each worker writes its values to a
file, and ``/metrics`` adds them up, so any worker answers for all.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterable
from ipaddress import ip_address, ip_network

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

# Redirect latencies are sub-millisecond when all is well; the tail matters.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)

# The redirect.
REDIRECT_SECONDS = Histogram(
    "clicktrack_redirect_seconds",
    "Time to answer /e/{code}, by outcome.",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
)
CLICKS_ACCEPTED = Counter("clicktrack_clicks_accepted", "Clicks written to the Redis stream.")
CLICKS_SPOOLED = Counter("clicktrack_clicks_spooled", "Clicks written to the local spool.")
CLICKS_REPLAYED = Counter("clicktrack_clicks_replayed", "Spooled clicks moved into Redis.")
COMMIT_UNEXPECTED_ERRORS = Counter(
    "clicktrack_commit_unexpected_errors",
    "Errors of no expected kind in the group commit (the batch went to the spool, or its "
    "redirects got 503s); each is logged.",
)
COMMIT_REPLICA_SHORTFALLS = Counter(
    "clicktrack_commit_replica_shortfalls",
    "Group-commit batches fewer than CLICKTRACK_REDIS_MIN_REPLICAS replicas confirmed within "
    "CLICKTRACK_REDIS_REPLICA_TIMEOUT_MS (WAIT): spooled, and spooling until they confirm.",
)
LINK_CACHE = Counter("clicktrack_link_cache", "Link lookups by the redirect.", ["result"])
LINK_MIRROR_UNREADABLE = Counter(
    "clicktrack_link_mirror_unreadable",
    "Link mirror records the redirect could not use (read from Postgres instead), by reason: "
    "corrupt, or major (a format version this release does not read).",
    ["reason"],
)
COMMIT_BATCH_SIZE = Histogram(
    "clicktrack_commit_batch_size", "Clicks per group commit.", buckets=_BATCH_BUCKETS
)
COMMIT_SECONDS = Histogram(
    "clicktrack_commit_seconds",
    "Round trip of one group commit to Redis (or the spool).",
    buckets=_LATENCY_BUCKETS,
)

# The flusher (its own process and port).
CLICK_FLAGS = Counter("clicktrack_click_flags", "Stored clicks by quality flag.", ["flag"])
STREAM_LENGTH = Gauge("clicktrack_stream_length", "Entries in the click stream.", ["shard"])
STREAM_PENDING = Gauge(
    "clicktrack_stream_pending", "Entries delivered to a flusher, not acked.", ["shard"]
)
FLUSHER_LAG = Gauge(
    "clicktrack_flusher_lag_seconds",
    "Age of the oldest click not yet stored (0 when the stream is drained).",
    ["shard"],
)
FLUSHER_BATCH_SIZE = Histogram(
    "clicktrack_flusher_batch_size", "Entries per flusher batch.", buckets=_BATCH_BUCKETS
)
FLUSHER_ROWS = Counter("clicktrack_flusher_rows", "Rows inserted into clicks.")
FLUSHER_DUPLICATES = Counter(
    "clicktrack_flusher_duplicates", "Entries already stored (re-deliveries), skipped."
)
FLUSHER_DEAD_LETTERS = Counter("clicktrack_flusher_dead_letters", "Entries dead-lettered.")
ROLLUP_FOLDS = Counter(
    "clicktrack_rollup_folds",
    "Folds of the rollup deltas into the rollups, by outcome (ok, failed): with none ok for "
    "minutes, reports by day, link and dimension stand still.",
    ["outcome"],
)
ROLLUP_FOLD_SECONDS = Histogram(
    "clicktrack_rollup_fold_seconds",
    "One fold of the pending rollup deltas (about a second's batches).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FLUSHER_WRITE_SECONDS = Histogram(
    "clicktrack_flusher_write_seconds",
    "Postgres write of one batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FLUSHER_RETRIES = Counter("clicktrack_flusher_retries", "Flusher steps failed and retried.")
FLUSHER_CLAIMED = Counter("clicktrack_flusher_claimed", "Entries claimed from idle consumers.")
FLUSHER_PARKED = Counter(
    "clicktrack_flusher_parked",
    "Entries of a record version this flusher does not read, set aside for one that does.",
)
FLUSHER_CONSUMERS_PRUNED = Counter(
    "clicktrack_flusher_consumers_pruned",
    "Consumers of the group deleted: idle past the bound, nothing pending.",
)

# The postback sender (its own process and port: python -m app.sender).
POSTBACK_PENDING = Gauge(
    "clicktrack_postback_deliveries_pending",
    "Postback and webhook deliveries waiting to be sent (due now or retrying later).",
)
POSTBACK_OLDEST_PENDING = Gauge(
    "clicktrack_postback_oldest_pending_seconds",
    "Age of the oldest pending delivery since it was queued (0 when none).",
)
# Merchants' postbacks received (app/api/postback.py), replays included.
POSTBACKS_RECEIVED = Counter(
    "clicktrack_postbacks_received",
    "Merchant postbacks received by outcome: created, updated, unchanged (an order's new "
    "status, or a repeat) or refused.",
    ["outcome"],
)
POSTBACK_ATTEMPTS = Counter(
    "clicktrack_postback_attempts",
    "Delivery attempts by outcome: delivered (2xx), retry (failed, tried again later), "
    "failed (failed, no more tries).",
    ["outcome"],
)
POSTBACK_ROWS_PRUNED = Counter(
    "clicktrack_postback_rows_pruned",
    "Rows deleted by the postback retention (CLICKTRACK_POSTBACK_RETENTION_DAYS), by table: "
    "postback_deliveries, postback_attempts, outbox_events, received_postbacks.",
    ["table"],
)


class BufferedHistogram:
    """One histogram child observed on the hot path: plain-int counts here, added to the
    real histogram in bulk by ``flush_buffered()`` (every second, from the web app's
    lifespan). ``Histogram.observe`` takes a lock per call and, with several workers,
    writes a memory-mapped file: a tenth of the redirect's own CPU time."""

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._bounds: list[float] = list(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        _BUFFERED.append(self)

    def observe(self, amount: float) -> None:
        self._counts[bisect_left(self._bounds, amount)] += 1  # the last bound is +Inf
        self._sum += amount

    def flush(self) -> None:
        counts, total = self._counts, self._sum
        self._counts, self._sum = [0] * len(self._bounds), 0.0
        # The child's own values, as its observe() updates them (prometheus-client keeps
        # these two attributes; tests/unit/test_metrics.py checks the result).
        for index, count in enumerate(counts):
            if count:
                self._child._buckets[index].inc(count)
        if total:
            self._child._sum.inc(total)


class BufferedCounter:
    """A counter child counted in a plain int, added to the real one by ``flush_buffered``."""

    def __init__(self, child: Counter) -> None:
        self._child = child
        self.count = 0
        _BUFFERED.append(self)

    def inc(self) -> None:
        self.count += 1

    def flush(self) -> None:
        count, self.count = self.count, 0
        if count:
            self._child.inc(count)


_BUFFERED: list[BufferedHistogram | BufferedCounter] = []


def flush_buffered() -> None:
    """Add what the buffered metrics counted since the last call to the real ones."""
    for buffered in _BUFFERED:
        buffered.flush()


def exposition() -> tuple[bytes, str]:
    """The metrics page: this process's registry, or every worker's in multiprocess mode."""
    flush_buffered()  # this worker's latest counts; called on the event loop, as they are
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def reader_allowed(client_host: str | None, networks: Iterable[str]) -> bool:
    """Whether a client at client_host may read the metrics: its address is in one of networks
    (an IPv4 client seen as an IPv4-mapped IPv6 address counts as the IPv4 one)."""
    if client_host is None:
        return False
    try:
        address = ip_address(client_host.split("%", 1)[0])
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ip_network(network) for network in networks)


def serve_metrics(port: int, host: str) -> None:
    """Serve the metrics page on host:port from a thread of this process: every worker's
    values in multiprocess mode (the process that starts the workers may serve them), else this
    process's, which the web app's buffered metrics reach within a second."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)
