"""A real local Redis Cluster for tests: 6 ``redis-server`` processes (3 primaries, 3
replicas) on free loopback ports, in a folder of their own, with the helpers the fault tests
need: which node owns a slot or key, kill a primary and wait for its replica's promotion,
restart a node, move a slot (resharding under load).

Every process is ours: started here, signalled only by its PID while it is our unreaped
child (never by name), stopped by ``stop()``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.crc import key_slot

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
NODE_TIMEOUT_MS = 2000  # how long a primary may be silent before its replica takes over
BUS_OFFSET = 10_000  # the cluster bus listens on the client port + 10000


def available() -> bool:
    """Whether this machine has the Redis binaries the harness starts."""
    return Path(REDIS_SERVER).is_file() and Path(REDIS_CLI).is_file()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_node_ports(count: int) -> list[int]:
    """``count`` loopback ports free both as client ports and as their bus ports (+10000)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + BUS_OFFSET < 65536 and port not in ports and _port_free(port + BUS_OFFSET):
            ports.append(port)
    return ports


@dataclass
class Node:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "redis.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.folder}\n"
            "cluster-enabled yes\ncluster-config-file nodes.conf\n"
            f"cluster-node-timeout {NODE_TIMEOUT_MS}\nappendonly yes\nsave ''\n"
            "protected-mode no\ndaemonize no\nlogfile redis.log\n"
            # A replica may always take over, however stale (a test cluster's replicas are
            # idle: "last interaction with its primary" says little here).
            "cluster-replica-validity-factor 0\nrepl-ping-replica-period 1\n"
            # A node restarted as a replica syncs at once (the default waits 5 s for more).
            "repl-diskless-sync-delay 0\n"
        )
        self.process = subprocess.Popen(
            [REDIS_SERVER, str(config)],
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _until(self._answers, 10.0, f"redis node {self.port} did not start")

    def _answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal our child by its PID (not reaped yet, so the PID is still ours), reap it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def info(self) -> dict[str, str]:
        with self.client() as client:
            raw = client.execute_command("CLUSTER", "INFO")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(line.split(":", 1) for line in text.split() if ":" in line)


@dataclass
class RedisClusterHarness:
    folder: Path
    size: int = 6
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        if not available():
            raise RuntimeError(f"{REDIS_SERVER} or {REDIS_CLI} is missing")
        ports = free_node_ports(self.size)
        self.nodes = [Node(port, self.folder / str(port)) for port in ports]
        try:
            for node in self.nodes:
                node.start()
            create = [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
            subprocess.run(
                [*create, "--cluster-replicas", "1", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self.wait_ok()
            self.wait_replicas_in_sync()
        except BaseException:
            self.stop()
            raise

    def wait_replicas_in_sync(self, within: float = 30.0) -> None:
        """Until every live primary has a replica whose link is up and in step: before
        that, WAIT counts none (a new cluster's replicas take a few seconds to sync)."""

        def synced() -> bool:
            for node in self.live():
                with node.client() as client:
                    info = client.info("replication")
                if info.get("role") == "master" and int(info.get("connected_slaves", 0)) < 1:
                    return False
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    return False
            return True

        _until(synced, within, "the replicas did not come in sync")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill(signal.SIGTERM)

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def wait_ok(self, within: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok`` and agrees on the primaries."""

        def ok() -> bool:
            try:
                if any(n.info().get("cluster_state") != "ok" for n in self.live()):
                    return False
                return len({tuple(sorted(self._primary_ports(n))) for n in self.live()}) == 1
            except redis.RedisError:
                return False

        _until(ok, within, "the cluster did not reach cluster_state:ok")

    def _slots(self, via: Node) -> list[tuple[int, int, int, list[int]]]:
        """(first slot, last slot, primary port, replica ports) as ``via`` sees them."""
        with via.client() as client:
            rows = client.execute_command("CLUSTER", "SLOTS")
        return [(int(r[0]), int(r[1]), int(r[2][1]), [int(x[1]) for x in r[3:]]) for r in rows]

    def _primary_ports(self, via: Node) -> list[int]:
        return [primary for _, _, primary, _ in self._slots(via)]

    def node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def owner_of_slot(self, slot: int) -> Node:
        """The primary serving ``slot``, as a live node sees it."""
        for first, last, primary, _ in self._slots(self.live()[0]):
            if first <= slot <= last:
                return self.node(primary)
        raise LookupError(f"slot {slot} is not served")

    def owner_of_key(self, key: str | bytes) -> Node:
        return self.owner_of_slot(key_slot(key.encode() if isinstance(key, str) else key))

    def primaries(self) -> list[Node]:
        return [self.node(p) for p in sorted(set(self._primary_ports(self.live()[0])))]

    def kill_primary(self, node: Node, within: float = 30.0) -> Node:
        """kill -9 ``node`` (a primary) and wait until one of its replicas serves its slots
        and the cluster is ok again. Returns the promoted replica."""
        slot = next(first for first, _, p, _ in self._slots(node) if p == node.port)
        node.kill()

        def promoted() -> bool:
            try:
                return self.owner_of_slot(slot).port != node.port
            except (redis.RedisError, LookupError):
                return False

        _until(promoted, within, f"no replica of {node.port} was promoted")
        self.wait_ok(within)
        return self.owner_of_slot(slot)

    def wait_replicas_caught_up(self, within: float = 60.0, slack: int = 64 * 1024) -> None:
        """Until every primary has a replica online (its full sync done: a node restarted as
        a replica has loaded the primary's data) whose acknowledged offset is within
        ``slack`` bytes of the primary's. Not to the byte: a replica acknowledges once a
        second, and the app's own commands (a flusher's trims, pings) keep moving the
        primary's offset meanwhile, so on a busy machine the two rarely read equal."""

        def in_sync() -> bool:
            try:
                for primary in self.primaries():
                    with primary.client() as client:
                        info = client.info("replication")
                    offset = int(info["master_repl_offset"])
                    replicas = [v for k, v in info.items() if k.startswith("slave")]
                    if not any(
                        isinstance(r, dict)
                        and r["state"] == "online"
                        and offset - int(r["offset"]) <= slack
                        for r in replicas
                    ):
                        return False
                return True
            except redis.RedisError:
                return False

        _until(in_sync, within, "the replicas did not catch up with their primaries")

    def restart(self, node: Node, within: float = 30.0) -> None:
        """Start a stopped node again on its port and folder (it rejoins as it was, or as a
        replica of the node promoted meanwhile)."""
        node.kill()
        node.start()
        self.wait_ok(within)

    def move_slot(self, slot: int, target: Node, batch: int = 100) -> int:
        """Migrate ``slot`` (and its keys) to ``target``: IMPORTING/MIGRATING, MIGRATE in
        batches, then SETSLOT NODE on every primary. Clients meanwhile get ASK, then MOVED.
        Returns the number of keys moved."""
        source = self.owner_of_slot(slot)
        if source.port == target.port:
            return 0
        with target.client() as dst, source.client() as src:
            target_id = dst.execute_command("CLUSTER", "MYID")
            source_id = src.execute_command("CLUSTER", "MYID")
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            moved = 0
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch):
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
            for node in self.primaries():
                with node.client() as client:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_ok()
        return moved


def _until(check: object, within: float, message: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.05)
