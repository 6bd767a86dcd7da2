"""How many events one sender process delivers per second to a receiver on loopback. Prints
the figure (docs/postbacks.md quotes it); asserts only a floor far below it.

    .venv/bin/pytest tests/integration/test_postback_throughput.py -q -s -p no:cacheprovider
"""

from __future__ import annotations

from pathlib import Path

from app.core.db import Pool
from app.postbacks import store
from app.postbacks.endpoints import EndpointKind
from tests.support.orders import new_publisher
from tests.support.processes import Child, child_env
from tests.support.receiver import Receiver
from tests.support.sending import settled

EVENTS = 2000
ENDPOINTS = 16  # at the default 4 requests at once each: 64, the default for a sender


async def test_one_sender_delivers_thousands_per_second(
    database_url: str, pool: Pool, tmp_path: Path
) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        async with pool.acquire() as conn:
            publisher_id = await new_publisher(conn)
            endpoints = [
                (
                    await store.create_endpoint(
                        conn,
                        publisher_id,
                        EndpointKind.webhook,
                        receiver.url(),
                        ["order_completed"],
                    )
                )[0].id
                for _ in range(ENDPOINTS)
            ]
            # The outbox's rows as emit_test writes them, in two statements.
            await conn.execute(
                """INSERT INTO outbox_events (id, publisher_id, event, payload)
                   SELECT gen_random_uuid(), $1, 'test', jsonb_build_object('n', n::text)
                   FROM generate_series(1, $2) n""",
                publisher_id,
                EVENTS,
            )
            await conn.execute(
                """INSERT INTO postback_deliveries (event_id, endpoint_id, publisher_id, event)
                   SELECT id, ($1::bigint[])[1 + (row_number() OVER () % $3)], $2, 'test'
                   FROM outbox_events WHERE publisher_id = $2""",
                endpoints,
                publisher_id,
                ENDPOINTS,
            )
        env = child_env(
            {
                "CLICKTRACK_DATABASE_URL": database_url,
                "CLICKTRACK_POSTBACK_ALLOW_NETWORKS": "127.0.0.0/8",
                "CLICKTRACK_SENDER_METRICS_PORT": "0",
                "CLICKTRACK_SENDER_HEARTBEAT_FILE": str(tmp_path / "sender.heartbeat"),
            }
        )
        sender = Child("sender", ["-m", "app.sender"], env, tmp_path, tmp_path / "sender.log")
        try:
            await receiver.wait_for(EVENTS, within=60)
            for endpoint in endpoints:
                assert (await settled(pool, endpoint, within=10)).keys() == {"delivered"}
        finally:
            await sender.stop()
        took = receiver.requests[-1].at - receiver.requests[0].at
        rate = EVENTS / took
        print(f"\n{EVENTS} signed webhooks, {ENDPOINTS} endpoints, one sender: {took:.2f} s")
        print(f"{rate:,.0f} events/s")
        assert rate > 100
        await pool.execute(
            "UPDATE postback_endpoints SET disabled_at = now() WHERE id = ANY($1)", endpoints
        )
    finally:
        await receiver.stop()
