"""``python -m tests.faults.stalling_flusher``: the real flusher, except that it never acks.

Scenario 8 needs a flusher that dies after its Postgres commit and before its ``XACK``. Here
``app.clicks.stream.ack``, which the flusher calls only once its batch is committed, is replaced in
this process (never in the app) by a stand-in that logs the batch and then waits forever;
the test SIGKILLs the process when it sees that line, so the kill lands exactly between the
commit and the ack, every time.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import redis.asyncio as aioredis

from app.clicks import stream
from app.clicks.stream import DeadLetter, Parked
from app.core.keys import RedisKeys
from app.flusher.__main__ import main

MARKER = "committed-not-acked"


async def stall_instead_of_ack(
    redis: aioredis.Redis,
    keys: RedisKeys,
    entry_ids: Sequence[bytes],
    dead_letters: Sequence[DeadLetter] = (),
    parked: Sequence[Parked] = (),
) -> int:
    print(f"{MARKER} {len(entry_ids)}", file=sys.stderr, flush=True)
    await asyncio.Event().wait()
    return 0


if __name__ == "__main__":
    stream.ack = stall_instead_of_ack
    sys.exit(main())
