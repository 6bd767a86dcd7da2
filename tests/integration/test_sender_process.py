"""``python -m app.sender`` as a real process: SIGKILLed mid-batch, a successor delivers the
rest; nothing is lost, and only the deliveries in flight at the kill may come twice (with
their event id, so an idempotent receiver keeps each once)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from app.core.db import Pool
from app.postbacks import outbox, store
from app.postbacks.endpoints import EndpointKind
from tests.support.orders import new_publisher
from tests.support.processes import PROJECT_ROOT, Child, child_env
from tests.support.receiver import Receiver
from tests.support.sending import settled

EVENTS = 80
PER_ENDPOINT = 4


def _env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return child_env(
        {
            "CLICKTRACK_DATABASE_URL": database_url,
            "CLICKTRACK_POSTBACK_ALLOW_NETWORKS": "127.0.0.0/8",
            "CLICKTRACK_POSTBACK_TIMEOUT_MS": "1000",  # a lease of 4 s
            "CLICKTRACK_POSTBACK_RETRY_FIRST_S": "0.05",
            "CLICKTRACK_POSTBACK_ENDPOINT_CONCURRENCY": str(PER_ENDPOINT),
            "CLICKTRACK_SENDER_METRICS_PORT": "0",
            "CLICKTRACK_SENDER_HEARTBEAT_FILE": str(tmp_path / "sender.heartbeat"),
        }
    )


async def _alive(env: dict[str, str]) -> None:
    """``python -m app.sender --check`` says the sender is alive (its heartbeat is fresh)."""
    for _ in range(50):
        probe = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.sender",
            "--check",
            env=env,
            cwd=PROJECT_ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await probe.communicate()
        if probe.returncode == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(stderr.decode())


async def test_a_killed_sender_loses_nothing(database_url: str, pool: Pool, tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.delay_s = 0.05
    await receiver.start()
    try:
        async with pool.acquire() as conn:
            publisher_id = await new_publisher(conn)
            endpoint, _ = await store.create_endpoint(
                conn,
                publisher_id,
                EndpointKind.postback,
                receiver.url("/pb?eid={event_id}"),
                ["order_completed"],
            )
            for _ in range(EVENTS):
                await outbox.emit_test(conn, endpoint.id, publisher_id)
        ids = {
            str(r["event_id"])
            for r in await pool.fetch(
                "SELECT event_id FROM postback_deliveries WHERE endpoint_id = $1", endpoint.id
            )
        }
        env = _env(database_url, tmp_path)
        first = Child("sender", ["-m", "app.sender"], env, tmp_path, tmp_path / "first.log")
        try:
            await receiver.wait_for(30, within=15)
        finally:
            first.kill()  # SIGKILL, mid-batch
        assert len(receiver.distinct) < EVENTS
        successor = Child("sender", ["-m", "app.sender"], env, tmp_path, tmp_path / "next.log")
        try:
            await _alive(env)
            assert await settled(pool, endpoint.id, within=20) == {"delivered": EVENTS}
        finally:
            assert await successor.stop() == 0, successor.tail()
        assert receiver.distinct == ids  # none lost
        repeated = [eid for eid, n in receiver.counts.items() if n > 1]
        assert len(repeated) <= PER_ENDPOINT  # only those in flight at the kill
        await pool.execute(
            "UPDATE postback_endpoints SET disabled_at = now() WHERE id = $1", endpoint.id
        )
    finally:
        await receiver.stop()
