"""Group commit: each request waits until its click is durable, many clicks per round trip.

``record()`` adds a payload to the batch being filled and waits for that batch. One batch is
in flight at a time; the next one fills meanwhile. A batch goes to Redis in one pipelined
round trip; when Redis errors or is slower than the timeout, the batch goes to the local
spool instead, and the writer keeps spooling (no timeout paid per batch) until the replay
task has found Redis answering within the timeout again and emptied the spool into it.

With replica acknowledgement on (``min_replicas`` > 0) each batch's write ends with ``WAIT``
(``resp.ReplicatedSender``; on a cluster, per node: ``resp_cluster.ClusterSender``), in the
same round trip: a batch fewer replicas confirmed within ``replica_timeout_s`` is spooled as
well (the flusher stores a click once, wherever it came from), and the writer spools until
the replay finds the replicas confirming again.

Every batch is answered, whatever happens: an error of no expected kind while sending to
Redis spools the batch as a Redis error would; one the spool raises refuses the batch
(``NotRecorded``: the redirect's quick 503); a cancelled drainer spools what it held.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis

from app.clicks import stream
from app.clicks.spool import Spool
from app.core import resp, resp_cluster
from app.core.aio import raise_if_cancelling
from app.core.keys import RedisKeys
from app.core.metrics import (
    CLICKS_ACCEPTED,
    CLICKS_REPLAYED,
    CLICKS_SPOOLED,
    COMMIT_BATCH_SIZE,
    COMMIT_REPLICA_SHORTFALLS,
    COMMIT_SECONDS,
    COMMIT_UNEXPECTED_ERRORS,
)
from app.core.redis import REDIS_UNAVAILABLE
from app.errors import Unavailable

log = logging.getLogger(__name__)

REPLAY_INTERVAL_S = 0.5
_PING = resp.command((b"PING",))
UNEXPECTED_LOG_EVERY_S = 60.0


class NotRecorded(Unavailable):
    """Neither Redis nor the spool could take the click: it must not be acknowledged."""


_unexpected_logged_at = float("-inf")
_shortfall_logged_at = float("-inf")
_shortfalls_unlogged = 0


def _log_unexpected(message: str, exc: Exception) -> None:
    """Count ``exc`` (being handled); log it, with its trace at most once per
    ``UNEXPECTED_LOG_EVERY_S`` (an error of a batch may well be the error of every batch)."""
    global _unexpected_logged_at
    COMMIT_UNEXPECTED_ERRORS.inc()
    now = time.monotonic()
    if now - _unexpected_logged_at >= UNEXPECTED_LOG_EVERY_S:
        _unexpected_logged_at = now
        log.exception(message, extra={"error": repr(exc)})
    else:
        log.error(message, extra={"error": repr(exc)})


def _log_shortfall(exc: resp.ReplicaShortfall) -> None:
    """Count a batch the replicas did not confirm; log it at most once per
    ``UNEXPECTED_LOG_EVERY_S``, with how many went unlogged since."""
    global _shortfall_logged_at, _shortfalls_unlogged
    COMMIT_REPLICA_SHORTFALLS.inc()
    now = time.monotonic()
    if now - _shortfall_logged_at < UNEXPECTED_LOG_EVERY_S:
        _shortfalls_unlogged += 1
        return
    log.warning(
        "replicas did not confirm a batch in time, spooling clicks",
        extra={"error": str(exc), "not_logged_since": _shortfalls_unlogged},
    )
    _shortfall_logged_at, _shortfalls_unlogged = now, 0


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
        min_replicas: int = 0,
        replica_timeout_s: float = 0.1,
    ) -> None:
        self._sender = self._new_sender(redis, min_replicas, replica_timeout_s)
        # The replay has a connection of its own: it runs while batches are written, and one
        # connection can carry only one exchange at a time. It WAITs as the batches do: a
        # spooled click leaves the spool only once it is as durable as a batch.
        self._replay_sender = self._new_sender(redis, min_replicas, replica_timeout_s)
        self._shard_keys = [keys.for_shard(n) for n in range(shards)]
        self._spool = spool
        # With WAIT, a write may take the replicas' timeout on top of Redis's own.
        self._timeout_s = timeout_s + (replica_timeout_s if min_replicas else 0.0)
        self._batch: _Batch | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self.redis_ok = True

    @staticmethod
    def _new_sender(
        redis: aioredis.Redis, min_replicas: int, replica_timeout_s: float
    ) -> resp.Sender:
        timeout_ms = max(1, round(replica_timeout_s * 1000))  # WAIT 0 waits for ever
        # One Redis's sender or a cluster's; with replicas wanted, each write ends with WAIT.
        return resp_cluster.sender_for(redis, min_replicas, timeout_ms)

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
        """Write the batches one after the other until none is waiting. Every batch taken is
        settled, on every path: an error of any kind ends as NotRecorded for its requests
        (``_commit``), and when this task is cancelled (a forced shutdown) or dies anyway,
        the batch it held and the one filling go to the spool before it ends."""
        batch: _Batch | None = None
        try:
            while self._batch is not None:
                batch, self._batch = self._batch, None
                batch.settle(await self._commit(batch.clicks))
                batch = None
        finally:
            self._drainer = None
            left = [b for b in (batch, self._batch) if b is not None]
            self._batch = None  # the next record() starts a batch and a drainer of its own
            for unsettled in left:
                unsettled.settle(self._spool_or_refuse(unsettled.clicks))

    async def _commit(self, batch: list[tuple[int, bytes]]) -> NotRecorded | None:
        """Write one batch: None once it is durable, else the error for its requests.
        Raises only CancelledError."""
        try:
            await self._write(batch)
        except NotRecorded as exc:
            return exc
        except Exception as exc:  # a bug past every fallback: the requests get their 503
            raise_if_cancelling()
            _log_unexpected("group commit failed, clicks refused", exc)
            return NotRecorded(repr(exc))
        return None

    async def _write(self, batch: list[tuple[int, bytes]]) -> None:
        """To Redis within the timeout, else (or while Redis is held failed) to the spool.
        Raises NotRecorded when the spool could not take it either."""
        started = time.perf_counter()
        COMMIT_BATCH_SIZE.observe(len(batch))
        if self.redis_ok:
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._to_redis(batch)
                CLICKS_ACCEPTED.inc(len(batch))
                COMMIT_SECONDS.observe(time.perf_counter() - started)
                return
            except resp.ReplicaShortfall as exc:  # on the primary, not durable: spool it too
                self.redis_ok = False
                _log_shortfall(exc)
            except REDIS_UNAVAILABLE as exc:
                raise_if_cancelling()
                self.redis_ok = False
                log.warning("redis unavailable, spooling clicks: %r", exc)
            except Exception as exc:  # of no expected kind: it may be about Redis all the same
                raise_if_cancelling()
                self.redis_ok = False
                _log_unexpected("unexpected error sending clicks to redis; spooling them", exc)
        self._spool_batch(batch)
        COMMIT_SECONDS.observe(time.perf_counter() - started)

    def _spool_batch(self, batch: list[tuple[int, bytes]]) -> None:
        """Append the batch to the spool, all or none. Raises NotRecorded on any error."""
        try:
            # A spool line is "<shard> <payload>": the replay puts it back where it belongs.
            self._spool.append([b"%d %s" % entry for entry in batch])
        except Exception as exc:
            if isinstance(exc, OSError):
                log.error("spool write failed, clicks refused", extra={"error": repr(exc)})
            else:
                _log_unexpected("unexpected error writing the spool, clicks refused", exc)
            raise NotRecorded(str(exc)) from exc
        CLICKS_SPOOLED.inc(len(batch))

    def _spool_or_refuse(self, batch: list[tuple[int, bytes]]) -> NotRecorded | None:
        try:
            self._spool_batch(batch)
        except NotRecorded as exc:
            return exc
        return None

    async def _to_redis(
        self, batch: list[tuple[int, bytes]], sender: resp.Sender | None = None
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
        CLICKS_REPLAYED.inc(len(batch))

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
            except REDIS_UNAVAILABLE as exc:
                raise_if_cancelling()
                self.redis_ok = False
                log.info("redis still unavailable", extra={"error": repr(exc)})
            except resp.ReplicaShortfall as exc:
                self.redis_ok = False
                log.info("replicas still not confirming", extra={"error": str(exc)})
            except Exception:  # this loop must outlive any surprise, or spooling never ends
                raise_if_cancelling()
                self.redis_ok = False
                log.exception("spool replay failed; retrying")

    async def replay_spool(self) -> int:
        """Move every spool file nobody holds (this writer's own, rotated first, included)
        into Redis; then batches go to Redis again. The number of clicks moved. Raises when
        Redis does not answer a ping within the batches' own timeout: a Redis that answers,
        but slower than a batch may wait, is not taken back (the clicks stay spooled). With
        replica acknowledgement the ping is followed by WAIT on the replay's connection (its
        last replayed write confirmed, or the replicas connected): ReplicaShortfall while too
        few replicas confirm, before any chunk is written again."""
        async with asyncio.timeout(self._timeout_s):
            await self._replay_sender.send([_PING])
        self._spool.rotate()
        replayed = await self._spool.replay(self._replay_lines)
        self.redis_ok = True
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
