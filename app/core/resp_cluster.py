"""Pre-encoded commands (``app/core/resp.py``) sent to a Redis Cluster: ``ClusterSender``.

A batch's commands are grouped by the primary that owns each one's key slot (the first key
of an ``EVAL``/``EVALSHA``, the first argument of any other command; one without a key goes
to the client's default node), written to each node in one write on a connection the sender
keeps per node, all nodes at once, and their replies put back in the batch's order. Every
key of one script call must be in one slot (``app/core/keys.py``'s hash tags).

On a connection error, a timeout, or a reply saying the slot is elsewhere (MOVED, ASK), a
cluster going down or a slot being migrated (TRYAGAIN), the slot map is read again before
the next batch and the error is raised: the caller treats it as any Redis error (the group
commit spools the batch, its replay sends it again later; a flusher retries its batch). The
commands another node applied meanwhile are applied again then: each caller's writes are
idempotent where it matters (a click is stored once by its id; a duplicate-window member
is added once). A node that does not know a script (a replica just promoted: scripts are
not replicated) answers NOSCRIPT without running it: the sender loads the script there and
sends those calls again, so no call runs twice.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)

from app.core import resp

_SCRIPT_VERBS = frozenset((b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL"))
# Replies that say the slot map we routed by is out of date.
_TOPOLOGY_ERRORS = (MovedError, AskError, ClusterDownError, TryAgainError)


def routing_key(command: bytes) -> bytes | None:
    """The key a RESP command is routed by: a script call's first key (None when it has
    none), else its first argument (None for a command without arguments)."""
    count = int(command[1 : command.index(b"\r\n")])
    pos = command.index(b"\r\n") + 2
    args: list[bytes] = []
    for _ in range(min(count, 4)):
        end = command.index(b"\r\n", pos)
        start = end + 2
        length = int(command[pos + 1 : end])
        args.append(command[start : start + length])
        pos = start + length + 2
        if len(args) == 2 and args[0].upper() not in _SCRIPT_VERBS:
            return args[1]
    if args and args[0].upper() in _SCRIPT_VERBS:
        return args[3] if len(args) == 4 and int(args[2]) > 0 else None
    return args[1] if len(args) > 1 else None


class ClusterSender:
    """A ``resp.Sender`` for a cluster client: one write per node per batch. With
    ``replicas`` > 0 each node's write ends with ``WAIT`` (``resp.wait_command``): ``send``
    raises ``resp.ReplicaShortfall`` when a node's replicas confirmed fewer in time (what
    the other nodes applied stays applied, as on any failure of a batch)."""

    def __init__(
        self, cluster: RedisCluster, replicas: int = 0, replica_timeout_ms: int = 100
    ) -> None:
        self._cluster = cluster
        self._held: dict[str, tuple[ClusterNode, Any]] = {}  # node name -> (node, connection)
        self._refresh = False
        self._replicas = replicas
        self._wait = resp.wait_command(replicas, replica_timeout_ms) if replicas else b""

    async def send(self, commands: list[bytes]) -> list[Any]:
        """The replies, in order. Raises on any failure (an error reply included)."""
        if self._refresh:
            self._refresh = False
            await self._cluster.nodes_manager.initialize()
        await self._cluster.initialize()  # a no-op once the slot map is known
        try:
            groups = self._route(commands)
        except RedisClusterException as exc:  # a slot no node serves: as a cluster down
            self._refresh = True
            raise ClusterDownError(str(exc)) from exc
        replies: list[Any] = [None] * len(commands)
        try:
            if len(groups) == 1:
                node, _ = groups[0]
                replies = await self._acked(node, commands)
            else:
                await self._gather(groups, commands, replies)
        except resp.ReplicaShortfall:
            raise  # the slot map is right: the replicas are behind
        except BaseException:
            self._refresh = True
            raise
        return await self._settle(commands, replies)

    def _route(self, commands: list[bytes]) -> list[tuple[ClusterNode, list[int]]]:
        """The commands' indices by the node that owns their key's slot."""
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        manager = self._cluster.nodes_manager
        for index, command in enumerate(commands):
            key = routing_key(command)
            if key is None:
                node = self._cluster.get_default_node()
            else:
                node = manager.get_node_from_slot(key_slot(key))
            by_node.setdefault(node.name, (node, []))[1].append(index)
        return list(by_node.values())

    async def _gather(
        self, groups: list[tuple[ClusterNode, list[int]]], commands: list[bytes], replies: list[Any]
    ) -> None:
        """Exchange with every node at once; each node's replies into their places. All
        exchanges end before the first failure is raised."""
        results = await asyncio.gather(
            *(self._acked(node, [commands[i] for i in indices]) for node, indices in groups),
            return_exceptions=True,
        )
        for (_, indices), result in zip(groups, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            for index, reply in zip(indices, result, strict=True):
                replies[index] = reply

    async def _settle(self, commands: list[bytes], replies: list[Any]) -> list[Any]:
        """Raise the first error reply, but for NOSCRIPT: those calls did not run, they are
        sent again once their scripts are loaded on their nodes."""
        refused = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        for reply in replies:
            if isinstance(reply, ResponseError) and not isinstance(reply, NoScriptError):
                if isinstance(reply, _TOPOLOGY_ERRORS):
                    self._refresh = True
                raise reply
        if refused:
            await self._load_scripts([commands[i] for i in refused])
            again = await self.send([commands[i] for i in refused])
            for index, reply in zip(refused, again, strict=True):
                replies[index] = reply
        return replies

    async def _load_scripts(self, calls: list[bytes]) -> None:
        """``SCRIPT LOAD`` each refused call's script on the node its key is on."""
        manager = self._cluster.nodes_manager
        loads: dict[str, tuple[ClusterNode, set[bytes]]] = {}
        for call in calls:
            sha = _second_argument(call)
            if sha not in resp.SCRIPTS:  # not one of ours: let its caller see NOSCRIPT
                raise NoScriptError(f"NOSCRIPT {sha.decode(errors='replace')}")
            key = routing_key(call)
            node = (
                self._cluster.get_default_node()
                if key is None
                else (manager.get_node_from_slot(key_slot(key)))
            )
            loads.setdefault(node.name, (node, set()))[1].add(sha)
        for node, shas in loads.values():
            load = [resp.command((b"SCRIPT", b"LOAD", resp.SCRIPTS[sha])) for sha in shas]
            for reply in await self._exchange(node, load):
                if isinstance(reply, ResponseError):
                    raise reply

    async def _acked(self, node: ClusterNode, commands: list[bytes]) -> list[Any]:
        """``_exchange``, then with replica acknowledgement ``WAIT`` in the same write: WAIT
        counts the replicas holding that connection's writes, so it is sent per node."""
        if not self._replicas:
            return await self._exchange(node, commands)
        replies = await self._exchange(node, [*commands, self._wait])
        return resp.check_acked(replies, self._replicas)

    async def _exchange(self, node: ClusterNode, commands: list[bytes]) -> list[Any]:
        """One write of ``commands`` to ``node`` and one reply each (an error reply as its
        exception, not raised). A failure drops the connection: replies may be left on it."""
        held = self._held.get(node.name)
        connection = held[1] if held is not None else node.acquire_connection()
        self._held[node.name] = (node, connection)
        try:
            await connection.send_packed_command(commands, check_health=False)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response(disable_decoding=True))
                except ResponseError as exc:  # a whole reply: the connection is in step
                    replies.append(exc)
            return replies
        except BaseException:
            del self._held[node.name]
            # nowait: this may run for a cancellation (a timeout), it must not wait again.
            await connection.disconnect(nowait=True)
            node.release(connection)
            raise

    async def close(self) -> None:
        held, self._held = self._held, {}
        for node, connection in held.values():
            node.release(connection)


def _second_argument(command: bytes) -> bytes:
    pos = command.index(b"\r\n") + 2
    for _ in range(2):
        end = command.index(b"\r\n", pos)
        start = end + 2
        length = int(command[pos + 1 : end])
        value, pos = command[start : start + length], start + length + 2
    return value


def sender_for(redis: aioredis.Redis, replicas: int = 0, timeout_ms: int = 100) -> resp.Sender:
    """The packed sender that fits ``redis``: a ``ClusterSender`` for a cluster client, else
    a ``PackedSender`` (one connection to the one Redis); with ``replicas`` > 0, each write
    ends with ``WAIT replicas timeout_ms`` (per node on a cluster)."""
    if isinstance(redis, RedisCluster):
        return ClusterSender(cast(RedisCluster, redis), replicas, timeout_ms)
    if replicas:
        return resp.ReplicatedSender(redis, replicas, timeout_ms)
    return resp.PackedSender(redis)
