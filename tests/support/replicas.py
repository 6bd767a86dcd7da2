"""A Redis primary and its replica, two ``redis-server`` processes of the test's own.

Both listen on free loopback ports, with their files in a folder of the test's; the replica
starts with ``--replicaof`` the primary. Each is signalled only by its PID while it is our
unreaped child (``subprocess.Popen``), never by name. ``promote`` is what a failover does to
the replica (``REPLICAOF NO ONE``); ``pause``/``resume`` freeze a process (SIGSTOP/SIGCONT).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from tests.support.processes import free_port


class RedisProcess:
    """One redis-server, our child: started at construction, ready when it returns."""

    def __init__(self, name: str, folder: Path, args: Sequence[str] = ()) -> None:
        executable = shutil.which("redis-server")
        assert executable, "redis-server is not installed"
        self.name = name
        self.port = free_port()
        self.folder = folder / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.paused = False
        command = [
            executable,
            *args,  # a config file first, if any: the options below win over it
            *("--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "no"),
            *("--save", "", "--dir", str(self.folder), "--logfile", ""),
        ]
        with (self.folder / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self._process.pid

    def running(self) -> bool:
        return self._process.poll() is None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def _wait_ready(self, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while True:
            assert self.running(), f"{self.name} exited:\n{self.log_tail()}"
            with contextlib.suppress(redis.RedisError), self.client() as client:
                if client.ping():
                    return
            assert time.monotonic() < deadline, f"{self.name} never answered:\n{self.log_tail()}"
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        text = (self.folder / "redis.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _signal(self, signum: int) -> None:
        if self._process.poll() is None:  # unreaped: the PID is still our child's
            self._process.send_signal(signum)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash of its host."""
        self._signal(signal.SIGKILL)
        self._process.wait()
        self.paused = False

    def stop(self) -> None:
        self.resume()
        self._signal(signal.SIGTERM)
        try:
            self._process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def replicate_from(self, port: int) -> None:
        """Replicate the Redis at 127.0.0.1:port (a proxy in front of the primary, say)."""
        with self.client() as client:
            client.execute_command("REPLICAOF", "127.0.0.1", str(port))

    def promote(self) -> None:
        """What a failover does to a replica: it stops replicating and takes writes."""
        with self.client() as client:
            client.execute_command("REPLICAOF", "NO", "ONE")


class ReplicatedRedis:
    """A primary and one replica of it. ``primary_args``/``replica_args``: more options
    (a config file first), for both unless ``replica_args`` is given."""

    def __init__(
        self,
        folder: Path,
        primary_args: Sequence[str] = (),
        replica_args: Sequence[str] | None = None,
    ) -> None:
        self.primary = RedisProcess("primary", folder, primary_args)
        try:
            own = primary_args if replica_args is None else replica_args
            self.replica = RedisProcess(
                "replica", folder, [*own, "--replicaof", "127.0.0.1", str(self.primary.port)]
            )
            self.wait_in_sync()
        except BaseException:
            self.primary.stop()
            raise

    def wait_in_sync(self, within: float = 20.0) -> None:
        """Until the replica is connected and has everything the primary wrote."""
        deadline = time.monotonic() + within
        while not self.in_sync():
            assert time.monotonic() < deadline, f"replica not in sync:\n{self.replica.log_tail()}"
            time.sleep(0.05)

    def in_sync(self) -> bool:
        with self.primary.client() as client:
            info = client.info("replication")
        replica = info.get("slave0")
        return (
            isinstance(replica, dict)
            and replica.get("state") == "online"
            and int(replica.get("offset", -1)) == int(info["master_repl_offset"])
        )

    def stop(self) -> None:
        for node in (self.replica, self.primary):
            node.stop()
