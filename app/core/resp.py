"""Redis commands encoded by hand in the Redis protocol (RESP) and sent in one write.

redis-py's pipeline encodes every argument in Python, tens of microseconds per command; the
hot loops (the redirect's group commit, the flusher's duplicate checks) build their
commands as bytes here instead and send a batch of them with ``PackedSender``.

``ReplicatedSender`` is a ``PackedSender`` that appends ``WAIT`` to each write: the writes
are answered only once enough replicas of that node have them (docs/reliability.md,
"Replica acknowledgement"). A sender of its own per connection to one node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError


def bulk(value: bytes) -> bytes:
    """One argument as a RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command(head: Sequence[bytes], tail: Sequence[bytes] = ()) -> bytes:
    """One command: the arguments of head, then those of tail, as a RESP array."""
    return b"*%d\r\n%s%s" % (
        len(head) + len(tail),
        b"".join(map(bulk, head)),
        b"".join(map(bulk, tail)),
    )


class Sender(Protocol):
    async def send(self, commands: list[bytes]) -> list[Any]: ...

    async def close(self) -> None: ...


# Every Script's text by its SHA1: a cluster sender loads a script on a node that does not
# know it (a replica just promoted) by the SHA1 of the EVALSHA it refused.
SCRIPTS: dict[bytes, bytes] = {}


class PackedSender:
    """Sends pre-encoded commands in one write on a connection it keeps, and reads one reply
    per command."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._pool = redis.connection_pool
        self._connection: Any = None

    async def send(self, commands: list[bytes]) -> list[Any]:
        """The replies, in order. Raises on any failure (an error reply included); the
        connection is then dropped, since replies may be left unread on it."""
        connection = self._connection or await self._pool.get_connection()  # type: ignore[no-untyped-call]
        self._connection = connection
        try:
            await connection.send_packed_command(commands, check_health=False)
            return [await connection.read_response(disable_decoding=True) for _ in commands]
        except BaseException:
            self._connection = None
            # nowait: this may run for a cancellation (a timeout), it must not wait again.
            await connection.disconnect(nowait=True)
            await self._pool.release(connection)
            raise

    async def close(self) -> None:
        if self._connection is not None:
            await self._pool.release(self._connection)
            self._connection = None


class ReplicaShortfall(Exception):
    """Fewer replicas than wanted confirmed a write within WAIT's timeout. The write is on
    the primary, maybe on some replicas: not lost, but a failover now could lose it."""

    def __init__(self, acked: int, wanted: int) -> None:
        super().__init__(f"{acked} of {wanted} replicas acknowledged")
        self.acked = acked
        self.wanted = wanted


def wait_command(replicas: int, timeout_ms: int) -> bytes:
    """``WAIT <replicas> <timeout_ms>``: the number of replicas that have every write sent
    before it on the same connection (timeout_ms 0 would wait for ever: never send it)."""
    return command((b"WAIT", b"%d" % replicas, b"%d" % timeout_ms))


def check_acked(replies: list[Any], replicas: int) -> list[Any]:
    """The replies of a write whose last command was ``wait_command(replicas, ...)``, that
    WAIT's own left out. Raises ReplicaShortfall when it counted fewer than ``replicas``,
    and WAIT's error reply if a sender handed it over as a value (a cluster's per node)."""
    acked = replies.pop()
    if isinstance(acked, Exception):
        raise acked
    if int(acked) < replicas:
        raise ReplicaShortfall(acked, replicas)
    return replies


class ReplicatedSender(PackedSender):
    """A ``PackedSender`` whose every write ends with ``WAIT``, in the same round trip and on
    the same connection (WAIT counts the replicas that have that connection's writes).
    ``send`` raises ReplicaShortfall when fewer than ``replicas`` confirmed in time; the
    connection is kept (the commands before WAIT were applied, their replies read)."""

    def __init__(self, redis: aioredis.Redis, replicas: int, timeout_ms: int) -> None:
        super().__init__(redis)
        self.replicas = replicas
        self._wait = wait_command(replicas, timeout_ms)

    async def send(self, commands: list[bytes]) -> list[Any]:
        return check_acked(await super().send([*commands, self._wait]), self.replicas)


class Script:
    """A Lua script, called by its SHA1 (``EVALSHA``), or by its text when Redis does not
    know it (a restart forgot it)."""

    def __init__(self, text: bytes) -> None:
        self.text = text
        self.sha = hashlib.sha1(text).hexdigest().encode()
        SCRIPTS[self.sha] = text

    async def run(
        self, sender: Sender, calls: Sequence[tuple[Sequence[bytes], Sequence[bytes]]]
    ) -> list[Any]:
        """One call per (keys, args), all in one write; their replies, in order. On NOSCRIPT
        the calls go again with the text (Redis caches it): NOSCRIPT fails before the script
        runs, so nothing had been applied."""
        try:
            return await sender.send([self._command(b"EVALSHA", self.sha, *c) for c in calls])
        except NoScriptError:
            return await sender.send([self._command(b"EVAL", self.text, *c) for c in calls])

    @staticmethod
    def _command(verb: bytes, script: bytes, keys: Sequence[bytes], args: Sequence[bytes]) -> bytes:
        return command([verb, script, b"%d" % len(keys), *keys], args)
