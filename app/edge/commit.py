"""Group commit: each request waits until its click is durable, many clicks per round trip.

``record()`` adds a payload to the batch being filled and waits for that batch. One batch is
in flight at a time; the next one fills meanwhile. A batch goes to Redis in one pipelined
round trip; when Redis errors or is slower than the timeout, the batch goes to the local
spool instead, and the writer keeps spooling (no timeout paid per batch) until the replay
task has found Redis answering again and emptied the spool into it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.clicks import stream
from app.clicks.spool import Spool
from app.core import resp
from app.core.aio import raise_if_cancelling
from app.core.keys import RedisKeys
from app.core.metrics import (
    CLICKS_ACCEPTED,
    CLICKS_REPLAYED,
    CLICKS_SPOOLED,
    COMMIT_BATCH_SIZE,
    COMMIT_SECONDS,
)
from app.errors import Unavailable

log = logging.getLogger(__name__)

REPLAY_INTERVAL_S = 0.5


class NotRecorded(Unavailable):
    """Neither Redis nor the spool could take the click: it must not be acknowledged."""


class _Batch:
    """The clicks being collected, and the two futures their requests learn the outcome by.

    ``done`` is what every request of the batch awaits: one plain future, which asyncio
    resumes its waiters from in C (a subclass, or a shield per request, costs each request
    microseconds). Its flaw: a waiting request that gets cancelled cancels it for all the
    others. ``outcome`` is the same result kept where no request's cancellation reaches it;
    the others fall back to it (``ClickWriter.record``).
    """

    __slots__ = ("clicks", "done", "outcome")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.clicks: list[tuple[int, bytes]] = []
        self.done: asyncio.Future[None] = loop.create_future()
        self.outcome: asyncio.Future[None] = loop.create_future()

    def settle(self, error: NotRecorded | None) -> None:
        for future in (self.done, self.outcome):
            if future.done():  # done, cancelled by a request that was
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
        if error is not None and not self.outcome.cancelled():
            self.outcome.exception()  # nobody may ask: not an unretrieved-error warning


class ClickWriter:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: RedisKeys,
        spool: Spool,
        *,
        timeout_s: float,
        shards: int = 1,
    ) -> None:
        self._redis = redis
        self._sender = resp.PackedSender(redis)
        # The replay has a connection of its own: it runs while batches are written, and one
        # connection can carry only one exchange at a time.
        self._replay_sender = resp.PackedSender(redis)
        self._shard_keys = [keys.for_shard(n) for n in range(shards)]
        self._spool = spool
        self._timeout_s = timeout_s
        self._batch: _Batch | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self.redis_ok = True

    async def record(self, payload: bytes, shard: int = 0) -> None:
        """Add a click to the batch being filled and wait until the batch is durable.
        Raises NotRecorded when neither Redis nor the spool took it."""
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch(asyncio.get_running_loop())
        batch.clicks.append((shard, payload))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        try:
            await batch.done
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this request was cancelled (its click is written all the same)
            # Another request of the batch was cancelled, and with it the shared future.
            await asyncio.shield(batch.outcome)

    async def _drain(self) -> None:
        try:
            while self._batch is not None:
                batch, self._batch = self._batch, None
                try:
                    await self._write(batch.clicks)
                except NotRecorded as exc:
                    batch.settle(exc)
                else:
                    batch.settle(None)
        finally:
            self._drainer = None

    async def _write(self, batch: list[tuple[int, bytes]]) -> None:
        started = time.perf_counter()
        COMMIT_BATCH_SIZE.observe(len(batch))
        if self.redis_ok:
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._to_redis(batch)
                CLICKS_ACCEPTED.inc(len(batch))
                COMMIT_SECONDS.observe(time.perf_counter() - started)
                return
            except (RedisError, OSError, TimeoutError) as exc:
                self.redis_ok = False
                log.warning("redis unavailable, spooling clicks: %r", exc)
        try:
            # A spool line is "<shard> <payload>": the replay puts it back where it belongs.
            self._spool.append([b"%d %s" % entry for entry in batch])
        except OSError as exc:
            log.error("spool write failed, clicks refused", extra={"error": repr(exc)})
            raise NotRecorded(str(exc)) from exc
        CLICKS_SPOOLED.inc(len(batch))
        COMMIT_SECONDS.observe(time.perf_counter() - started)

    async def _to_redis(
        self, batch: list[tuple[int, bytes]], sender: resp.PackedSender | None = None
    ) -> None:
        keys = self._shard_keys
        await stream.add_batch(
            sender or self._sender, [(keys[shard], payload) for shard, payload in batch]
        )

    async def _replay_lines(self, lines: list[bytes]) -> None:
        batch = []
        for line in lines:
            shard, space, payload = line.partition(b" ")
            if space and shard.isdigit():
                batch.append((int(shard) % len(self._shard_keys), payload))
            else:  # not ours to parse: the flusher dead-letters what is not a click
                batch.append((0, line))
        async with asyncio.timeout(self._timeout_s * 4):
            await self._to_redis(batch, self._replay_sender)

    def start(self) -> None:
        self._replayer = asyncio.create_task(self._replay_forever())

    async def _replay_forever(self) -> None:
        """Probe Redis while spooling; move spooled clicks (ours or a dead worker's) into it."""
        while True:
            await asyncio.sleep(REPLAY_INTERVAL_S)
            if self.redis_ok and not self._spool.has_data():
                continue
            try:
                await self.replay_spool()
            except (RedisError, OSError, TimeoutError) as exc:
                raise_if_cancelling()
                self.redis_ok = False
                log.info("redis still unavailable", extra={"error": repr(exc)})
            except Exception:  # this loop must outlive any surprise, or spooling never ends
                raise_if_cancelling()
                self.redis_ok = False
                log.exception("spool replay failed; retrying")

    async def replay_spool(self) -> int:
        async with asyncio.timeout(self._timeout_s * 4):
            await self._redis.ping()
        self._spool.rotate()
        replayed = await self._spool.replay(self._replay_lines)
        self.redis_ok = True
        CLICKS_REPLAYED.inc(replayed)
        if replayed:
            log.info("spooled clicks replayed into redis", extra={"clicks": replayed})
        return replayed

    async def close(self) -> None:
        """Finish what is buffered (to Redis or the spool); stop the replayer."""
        if self._drainer is not None:
            await self._drainer
        if self._replayer is not None:
            self._replayer.cancel()
            await asyncio.gather(self._replayer, return_exceptions=True)
        await self._sender.close()
        await self._replay_sender.close()
        self._spool.close()
