"""The Redis Cluster fixture: one real local cluster (3 primaries, 3 replicas on loopback
ports, ``tests/support/redis_cluster.py``) for the whole test session, started on first use;
its tests are skipped, saying why, on a machine without ``redis-server``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.settings import Settings
from tests.support.redis_cluster import REDIS_SERVER, RedisClusterHarness, available


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterHarness]:
    if not available():
        pytest.skip(f"no {REDIS_SERVER} (Redis 7) on this machine: no local Redis Cluster")
    harness = RedisClusterHarness(Path(tmp_path_factory.mktemp("redis-cluster")))
    harness.start()
    try:
        yield harness
    finally:
        harness.stop()


@pytest.fixture
def cluster_settings(settings: Settings, redis_cluster: RedisClusterHarness) -> Settings:
    """The test's settings (its own key prefix and database) on the cluster, with 4 stream
    shards: ``{0}`` to ``{3}`` hash to slots of all three primaries."""
    return settings.model_copy(update={"redis_url": redis_cluster.url, "stream_shards": 4})
