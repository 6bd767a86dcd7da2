"""Throwaway Redis and Postgres servers: started here from local binaries on chosen ports, their
data in chosen folders, each in its own session; stopped or killed through their handles.

start_redis() and start_postgres() are also what tests and the benchmark use."""

from __future__ import annotations

import abc
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from devstack.base import MAINTENANCE_DATABASE, DevstackError, MissingBinaries, log_tail
from devstack.net import port_open
from devstack.pgsetup import (
    initdb,
    owned_dir,
    postgres_dirs,
    postgres_user,
    running_postmaster,
    user_args,
)
from devstack.probes import postgres_answers, redis_answers
from devstack.procs import Proc
from devstack.signals import wait_until


class ServerHandle(abc.ABC):
    """A server started here. stop() shuts it down cleanly; kill() is like a crash (SIGKILL)."""

    def __init__(self, name: str, port: int, data_dir: Path, log_path: Path) -> None:
        self.name = name
        self.port = port
        self.data_dir = data_dir
        self.log_path = log_path

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """The URL to connect to it."""

    @property
    @abc.abstractmethod
    def pid(self) -> int:
        """The PID of the server process (our child)."""

    @abc.abstractmethod
    def is_running(self) -> bool:
        """Whether the server process is still running."""

    @abc.abstractmethod
    def stop(self, timeout: float = 30.0) -> None:
        """Shut it down cleanly; kill it if that takes longer than timeout seconds."""

    @abc.abstractmethod
    def kill(self) -> None:
        """SIGKILL, like a crash; return once it is gone."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} url={self.url}>"


class RedisServer(ServerHandle):
    """A throwaway redis-server, our child process."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, data_dir: Path, log_path: Path
    ) -> None:
        super().__init__("redis", port, data_dir, log_path)
        self._process = process

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self._process.pid

    def is_running(self) -> bool:
        return self._process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (Redis shuts down cleanly); SIGKILL after timeout."""
        if self._process.poll() is None:
            self._process.terminate()  # Redis shuts down cleanly on SIGTERM
            if not wait_until(lambda: self._process.poll() is not None, timeout):
                self.kill()
        self._process.wait()

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()


class PostgresServer(ServerHandle):
    """A throwaway postmaster, our child process (not daemonized by pg_ctl)."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, data_dir: Path, log_path: Path
    ) -> None:
        super().__init__("postgres", port, data_dir, log_path)
        self._process = process

    @property
    def url(self) -> str:
        """The maintenance database, as user postgres (trust auth)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{MAINTENANCE_DATABASE}"

    @property
    def pid(self) -> int:
        return self._process.pid

    def is_running(self) -> bool:
        return self._process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT); immediate shutdown (SIGQUIT) after timeout; then SIGKILL."""
        for signum, grace in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0)):
            if self._process.poll() is None:
                self._process.send_signal(signum)
                wait_until(lambda: self._process.poll() is not None, grace)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends at once, like a machine crash would."""
        postmaster = Proc.find(self.pid) if self._process.poll() is None else None
        backends = postmaster.children() if postmaster else []
        if self._process.poll() is None:
            self._process.kill()
        for backend in backends:
            backend.signal(signal.SIGKILL)
        self._process.wait()
        wait_until(lambda: not any(backend.alive() for backend in backends), 10)


def find_redis_server() -> Path | None:
    """redis-server on PATH, if any."""
    found = shutil.which("redis-server")
    return Path(found) if found else None


def find_postgres_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: pg_ctl's on PATH, else the newest
    /usr/lib/postgresql/*/bin (Debian's layout)."""
    candidates = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    numbered = [path for path in versions if path.parent.name.isdigit()]
    candidates += sorted(numbered, key=lambda path: int(path.parent.name), reverse=True)
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _refuse_busy_port(port: int, name: str) -> None:
    if port_open(port):
        raise DevstackError(
            f"cannot start a throwaway {name} on 127.0.0.1:{port}: something already listens "
            f"there (a leftover from an earlier run? see: ss -ltnp 'sport = :{port}')"
        )


def _await_ready(
    server: ServerHandle,
    process: subprocess.Popen[bytes],
    program: str,
    answers: Callable[[], bool],
    timeout: float,
    interval: float,
) -> None:
    """Return once server answers; kill it and raise if it exits or does not answer in time."""
    try:
        ready = wait_until(lambda: not server.is_running() or answers(), timeout, interval)
        if not server.is_running():
            raise DevstackError(
                f"{program} exited with code {process.returncode} at start; "
                f"its log, {server.log_path}, ends with:\n{log_tail(server.log_path)}"
            )
        if not ready:
            raise DevstackError(
                f"{program} did not answer within {timeout:.0f}s; see {server.log_path}"
            )
    except BaseException:
        server.kill()
        raise


def _redis_command(
    executable: Path, data_dir: Path, port: int, appendonly: bool | None, config: Path | None
) -> list[str]:
    command = [
        str(executable),
        *([str(config.absolute())] if config is not None else []),
        *("--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no"),
        *("--save", ""),
        *("--dir", str(data_dir), "--pidfile", str(data_dir / "redis.pid"), "--logfile", ""),
    ]
    if appendonly is not None or config is None:
        command += ["--appendonly", "yes" if appendonly else "no"]
    return command


def start_redis(
    data_dir: Path,
    port: int,
    *,
    appendonly: bool | None = None,
    config: Path | None = None,
    timeout: float = 20.0,
) -> RedisServer:
    """Start redis-server on 127.0.0.1:port with its files in data_dir; return when it answers.

    config: a redis.conf to start from (deploy/redis/redis.conf, say); the address, the data
    directory, no RDB snapshots and, unless None, appendonly are set here over it. Without a
    config, appendonly defaults to no."""
    executable = find_redis_server()
    if executable is None:
        raise MissingBinaries(["redis"])
    _refuse_busy_port(port, "redis")
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "redis.log"
    command = _redis_command(executable, data_dir, port, appendonly, config)
    with log_path.open("ab") as log_file:  # own session: a Ctrl-C reaches devstack only
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=True,
        )
    server = RedisServer(process, port, data_dir, log_path)
    _await_ready(
        server, process, "redis-server", lambda: redis_answers(server.url, 0.5), timeout, 0.1
    )
    return server


def start_postgres(data_dir: Path, port: int, *, timeout: float = 60.0) -> PostgresServer:
    """Start a Postgres on 127.0.0.1:port (user postgres, trust auth) with its data in data_dir
    (initdb'd if new) and its unix socket and log in the sibling folder "<data_dir>-run";
    return when it answers.

    As root, Postgres runs as the 'clicktrack' user if present, else 'nobody'; if that user
    cannot reach data_dir, a folder under /tmp is used instead (see .data_dir)."""
    bin_dir = find_postgres_bin_dir()
    if bin_dir is None:
        raise MissingBinaries(["postgres"])
    user = postgres_user()
    data_dir, socket_dir, own = postgres_dirs(data_dir.absolute(), port, user)
    owned_dir(data_dir, user, adopt=own)
    owned_dir(socket_dir, user, adopt=own)
    log_path = socket_dir / "postgres.log"
    leftover = running_postmaster(data_dir)
    if leftover is not None:
        raise DevstackError(
            f"a Postgres (pid {leftover.pid}) already runs on {data_dir}, a leftover from an "
            f"earlier run? Stop it: kill -INT {leftover.pid}"
        )
    _refuse_busy_port(port, "postgres")
    if not (data_dir / "PG_VERSION").is_file():
        initdb(bin_dir, data_dir, log_path, user)
    command = [str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port)]
    command += ["-k", str(socket_dir), "-c", "listen_addresses=127.0.0.1"]
    # Our own child (not daemonized by pg_ctl), so we reap it and know its PID for sure;
    # in its own session, so a Ctrl-C reaches devstack only.
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=True,
            **user_args(user),
        )
    server = PostgresServer(process, port, data_dir, log_path)
    _await_ready(
        server, process, "postgres", lambda: postgres_answers(server.url, 1.0), timeout, 0.2
    )
    return server
