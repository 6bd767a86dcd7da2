#!/usr/bin/env python3
"""The clicktrack development stack: find or start Redis and Postgres, then run the app or checks.

Usually called through make:

    scripts/devstack.py run                     migrate, then serve the app (and the flusher)
    scripts/devstack.py test [-- PYTEST_ARGS]   ruff, ruff format, mypy, pytest
    scripts/devstack.py services                only the two servers, until Ctrl-C
    scripts/devstack.py faults|bench|loadtest [-- ARGS]

Each of Redis and Postgres is found separately, in this order:

1. the configured URL (CLICKTRACK_REDIS_URL / CLICKTRACK_DATABASE_URL, from the environment
   or the project's .env file, as the app reads them), if it answers;
2. a server answering on 127.0.0.1 at the default port (6379; 5432 as user postgres);
3. a throwaway server started here from local binaries, its data under .data/
   (Redis on port 56379, Postgres on port 55432).

CLICKTRACK_LOCAL_SERVICES=1 skips 1 and 2. Only processes started here are ever stopped, by
PID. The module is also a library for tests: start_redis() and start_postgres() start
throwaway servers on chosen ports and return handles with stop() and kill().
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import hashlib
import http.client
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = PROJECT_ROOT / ".data"
PYTHON = sys.executable

REDIS_URL_ENV = "CLICKTRACK_REDIS_URL"
DATABASE_URL_ENV = "CLICKTRACK_DATABASE_URL"
TEST_REDIS_URL_ENV = "CLICKTRACK_TEST_REDIS_URL"
TEST_DATABASE_URL_ENV = "CLICKTRACK_TEST_DATABASE_URL"
LOCAL_SERVICES_ENV = "CLICKTRACK_LOCAL_SERVICES"

REDIS_DEFAULT_URL = "redis://127.0.0.1:6379/0"
POSTGRES_DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_LOCAL_PORT = 56379
POSTGRES_LOCAL_PORT = 55432
DEFAULT_DATABASE = "clicktrack"
MAINTENANCE_DATABASE = "postgres"
CHILD_GRACE_S = 10.0
INSTALL_PACKAGES = {"redis": "redis-server", "postgres": "postgresql"}

T = TypeVar("T")


class DevstackError(Exception):
    """Something the user has to fix; main() prints it without a traceback."""


class MissingBinaries(DevstackError):
    def __init__(self, kinds: Sequence[str]) -> None:
        packages = " ".join(INSTALL_PACKAGES[kind] for kind in kinds)
        super().__init__(
            f"need a throwaway {' and '.join(kinds)} (none answers, or {LOCAL_SERVICES_ENV}=1), "
            "but the server binaries are not installed.\n"
            f"  Install them (Debian/Ubuntu): apt-get install {packages}\n"
            f"  or point {REDIS_URL_ENV} / {DATABASE_URL_ENV} at running servers."
        )


def log(message: str) -> None:
    print(f"devstack: {message}", file=sys.stderr, flush=True)


# --- Signals ------------------------------------------------------------------------------------


class Interrupted(BaseException):
    """Raised, once per process, by the signal handler on Ctrl-C, SIGTERM or SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals:
    raised = False  # Interrupted was raised already
    cleaning_up = False  # never raise from now on: clean-up must not be cut short
    hurry = False  # another signal came while cleaning up: skip the grace periods


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _Signals.raised or _Signals.cleaning_up:
        _Signals.hurry = True
        return
    _Signals.raised = True
    raise Interrupted(signum)


def _begin_cleanup() -> None:
    _Signals.cleaning_up = True


def install_signal_handlers() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)


# --- Small helpers ------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll predicate until it is true (True) or timeout seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline or _Signals.hurry:
            return False
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def redact(url: str) -> str:
    """The URL with its password, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


def database_name(dsn: str) -> str:
    """The database named in a Postgres URL ('' if none)."""
    return unquote(urlsplit(dsn).path.lstrip("/"))


def with_database(dsn: str, name: str) -> str:
    """The same Postgres URL, naming another database."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + quote(name, safe="")))


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    with suppress(FileNotFoundError):
        for raw in path.read_text().splitlines():
            line = raw.strip().removeprefix("export ").strip()
            key, sep, value = line.partition("=")
            if not sep or line.startswith("#"):
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    return values


def read_config(
    environ: Mapping[str, str] | None = None, dotenv: Path = PROJECT_ROOT / ".env"
) -> dict[str, str]:
    """The non-empty CLICKTRACK_* settings as the app sees them: the environment over .env."""
    merged = _read_dotenv(dotenv)
    merged.update(os.environ if environ is None else environ)
    return {key: value for key, value in merged.items() if key.startswith("CLICKTRACK_") and value}


# --- Probes -------------------------------------------------------------------------------------


_POSTGRES_ERRORS = (
    OSError,
    TimeoutError,
    ValueError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run coro to completion, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def redis_problem(url: str, timeout: float = 2.0) -> str | None:
    """None if the Redis at url answers PING, else why not."""
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
    except ValueError as exc:
        return str(exc)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        client.close()
    return None


def redis_answers(url: str, timeout: float = 2.0) -> bool:
    return redis_problem(url, timeout) is None


async def _postgres_ping(dsn: str, connect_timeout: float) -> None:
    conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


def postgres_problem(dsn: str, timeout: float = 3.0) -> str | None:
    """None if a connection to dsn works, else why not."""
    try:
        _run_coroutine(_postgres_ping(dsn, timeout))
    except _POSTGRES_ERRORS as exc:
        return str(exc) or type(exc).__name__
    return None


def postgres_answers(dsn: str, timeout: float = 3.0) -> bool:
    return postgres_problem(dsn, timeout) is None


async def _ensure_database(maintenance_dsn: str, name: str) -> bool:
    conn = await asyncpg.connect(maintenance_dsn, timeout=5)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:  # created concurrently
            return False
        return True
    finally:
        await conn.close()


def ensure_database(maintenance_dsn: str, name: str) -> bool:
    """Create database name on the server of maintenance_dsn if missing; True if created."""
    try:
        return _run_coroutine(_ensure_database(maintenance_dsn, name))
    except _POSTGRES_ERRORS as exc:
        raise DevstackError(
            f"cannot create database {name!r} via {redact(maintenance_dsn)}: {exc}"
        ) from exc


# --- Processes we did not fork ourselves --------------------------------------------------------


@dataclass(frozen=True)
class _ProcStat:
    state: str
    ppid: int
    start_time: str


def _proc_stat(pid: int) -> _ProcStat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # after "pid (comm)": state, ppid, ..., starttime
    return _ProcStat(state=fields[0], ppid=int(fields[1]), start_time=fields[19])


@dataclass(frozen=True)
class _Proc:
    """A process known by PID and start time, so that a reused PID is never signalled."""

    pid: int
    start_time: str

    @classmethod
    def find(cls, pid: int) -> _Proc | None:
        info = _proc_stat(pid)
        return None if info is None else cls(pid, info.start_time)

    def alive(self) -> bool:
        info = _proc_stat(self.pid)
        return info is not None and info.start_time == self.start_time and info.state not in "ZX"

    def signal(self, signum: int) -> None:
        if self.alive():
            with suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def children(self) -> list[_Proc]:
        found = []
        for entry in Path("/proc").iterdir():
            info = _proc_stat(int(entry.name)) if entry.name.isdigit() else None
            if info is not None and info.ppid == self.pid:
                found.append(_Proc(int(entry.name), info.start_time))
        return found


# --- Throwaway servers --------------------------------------------------------------------------


class ServerHandle(abc.ABC):
    """A server started here. stop() shuts it down cleanly; kill() is like a crash (SIGKILL)."""

    def __init__(self, name: str, port: int, data_dir: Path, log_path: Path) -> None:
        self.name = name
        self.port = port
        self.data_dir = data_dir
        self.log_path = log_path

    @property
    @abc.abstractmethod
    def url(self) -> str: ...

    @property
    @abc.abstractmethod
    def pid(self) -> int: ...

    @abc.abstractmethod
    def is_running(self) -> bool: ...

    @abc.abstractmethod
    def stop(self, timeout: float = 30.0) -> None: ...

    @abc.abstractmethod
    def kill(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} url={self.url}>"


class RedisServer(ServerHandle):
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
        postmaster = _Proc.find(self.pid) if self._process.poll() is None else None
        backends = postmaster.children() if postmaster else []
        if self._process.poll() is None:
            self._process.kill()
        for backend in backends:
            backend.signal(signal.SIGKILL)
        self._process.wait()
        wait_until(lambda: not any(backend.alive() for backend in backends), 10)


def find_redis_server() -> Path | None:
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
    command = [
        str(executable),
        *([str(config.absolute())] if config is not None else []),
        *("--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no"),
        *("--save", ""),
        *("--dir", str(data_dir), "--pidfile", str(data_dir / "redis.pid"), "--logfile", ""),
    ]
    if appendonly is not None or config is None:
        command += ["--appendonly", "yes" if appendonly else "no"]
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
    try:
        ready = wait_until(
            lambda: not server.is_running() or redis_answers(server.url, 0.5), timeout
        )
        if not server.is_running():
            raise DevstackError(
                f"redis-server exited with code {process.returncode} at start; "
                f"its log, {log_path}, ends with:\n{_tail(log_path)}"
            )
        if not ready:
            raise DevstackError(
                f"redis-server did not answer within {timeout:.0f}s; see {log_path}"
            )
    except BaseException:
        server.kill()
        raise
    return server


def postgres_user() -> pwd.struct_passwd | None:
    """The account to run Postgres as when we are root (Postgres refuses root), else None."""
    if os.geteuid() != 0:
        return None
    for name in ("clicktrack", "nobody"):
        with suppress(KeyError):
            return pwd.getpwnam(name)
    raise DevstackError(
        "running as root, but there is no 'clicktrack' or 'nobody' user to run "
        "Postgres as; create one: useradd --system clicktrack"
    )


def _user_args(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen arguments to run a command as user (None: as ourselves), without PG* variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    if user is None:
        return {"env": env}
    env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    return {"env": env, "user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _can_traverse(path: Path, user: pwd.struct_passwd) -> bool:
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for directory in (path, *path.parents):
        info = directory.stat()
        if info.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def _owned_dir(path: Path, user: pwd.struct_passwd | None, *, adopt: bool) -> Path:
    """Make path a private directory of user (None: of us). adopt: chown what is there
    (our own project folders); else refuse one owned by someone else (shared /tmp)."""
    uid = os.geteuid() if user is None else user.pw_uid
    gid = os.getegid() if user is None else user.pw_gid
    created = not path.exists()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise DevstackError(f"{path} should be a directory")
    if info.st_uid != uid and not (created or (adopt and os.geteuid() == 0)):
        raise DevstackError(f"{path} belongs to uid {info.st_uid}, expected uid {uid}")
    if info.st_uid != uid:
        for root, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                os.lchown(Path(root) / name, uid, gid)
        os.chown(path, uid, gid)
    path.chmod(0o700)
    return path


def _postgres_dirs(
    data_dir: Path, port: int, user: pwd.struct_passwd | None
) -> tuple[Path, Path, bool]:
    """The data and socket directories to use, and whether they are our own project folders."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    socket_dir = data_dir.with_name(data_dir.name + "-run")
    own = True
    if user is not None and not _can_traverse(data_dir.parent, user):
        base = Path(tempfile.gettempdir()) / f"clicktrack-devstack-{user.pw_name}"
        _owned_dir(base, user, adopt=False)
        tag = f"{data_dir.name}-{_short_hash(str(data_dir))}"
        log(
            f"note: user {user.pw_name} cannot reach {data_dir.parent}, so the Postgres data "
            f"goes to {base / tag} instead"
        )
        data_dir, socket_dir, own = base / tag, base / f"{tag}-run", False
    if len(str(socket_dir / f".s.PGSQL.{port}.lock")) > 100:  # unix socket paths are short
        socket_dir = Path(tempfile.gettempdir()) / f"clicktrack-pg-{_short_hash(str(socket_dir))}"
        _owned_dir(socket_dir, user, adopt=False)
    return data_dir, socket_dir, own


def _running_postmaster(data_dir: Path) -> _Proc | None:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    postmaster = _Proc.find(pid)
    if postmaster is None or not postmaster.alive():
        return None
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return postmaster if comm in {"postgres", "postmaster"} else None


def _initdb(bin_dir: Path, data_dir: Path, log_path: Path, user: pwd.struct_passwd | None) -> None:
    command = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "-A", "trust"]
    with log_path.open("ab") as log_file:
        result = subprocess.run(
            [*command, "-E", "UTF8", "--no-locale", "--no-sync"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            check=False,
            **_user_args(user),
        )
    if result.returncode != 0:
        raise DevstackError(
            f"initdb failed for {data_dir}; its log, {log_path}, ends with:\n{_tail(log_path)}"
        )


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
    data_dir, socket_dir, own = _postgres_dirs(data_dir.absolute(), port, user)
    _owned_dir(data_dir, user, adopt=own)
    _owned_dir(socket_dir, user, adopt=own)
    log_path = socket_dir / "postgres.log"
    leftover = _running_postmaster(data_dir)
    if leftover is not None:
        raise DevstackError(
            f"a Postgres (pid {leftover.pid}) already runs on {data_dir}, a leftover from an "
            f"earlier run? Stop it: kill -INT {leftover.pid}"
        )
    _refuse_busy_port(port, "postgres")
    if not (data_dir / "PG_VERSION").is_file():
        _initdb(bin_dir, data_dir, log_path, user)
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
            **_user_args(user),
        )
    server = PostgresServer(process, port, data_dir, log_path)
    try:
        ready = wait_until(
            lambda: not server.is_running() or postgres_answers(server.url, 1.0), timeout, 0.2
        )
        if not server.is_running():
            raise DevstackError(
                f"postgres exited with code {process.returncode} at start; "
                f"its log, {log_path}, ends with:\n{_tail(log_path)}"
            )
        if not ready:
            raise DevstackError(f"postgres did not answer within {timeout:.0f}s; see {log_path}")
    except BaseException:
        server.kill()
        raise
    return server


# --- Discovery ----------------------------------------------------------------------------------


@dataclass
class Service:
    """A Redis or Postgres to use. For Postgres, url names the maintenance database."""

    kind: str
    url: str
    origin: str
    handle: ServerHandle | None = None
    configured_url: str | None = None  # the configured Postgres URL, when that one answered


def _candidates(configured: str | None, default: str) -> list[tuple[str, str]]:
    found = [(configured, "configured")] if configured else []
    if configured != default:
        found.append((default, "found on the default port"))
    return found


def find_redis(configured: str | None) -> Service | None:
    """Steps 1 and 2 of discovery for Redis."""
    for url, origin in _candidates(configured, REDIS_DEFAULT_URL):
        problem = redis_problem(url)
        if problem is None:
            return Service("redis", url, origin)
        if origin == "configured":
            log(f"configured {REDIS_URL_ENV}={redact(url)} does not answer ({problem})")
    return None


def find_postgres(configured: str | None) -> Service | None:
    """Steps 1 and 2 of discovery for Postgres (checked on the maintenance database)."""
    for url, origin in _candidates(configured, POSTGRES_DEFAULT_URL):
        maintenance = with_database(url, MAINTENANCE_DATABASE)
        problem = postgres_problem(maintenance)
        if problem is None:
            configured_url = url if origin == "configured" else None
            return Service("postgres", maintenance, origin, configured_url=configured_url)
        if origin == "configured":
            log(f"configured {DATABASE_URL_ENV}={redact(url)} does not answer ({problem})")
    return None


class DevStack:
    """Finds or starts Redis and Postgres (see the module docstring); stop() stops only the
    servers it started. Use as a context manager."""

    def __init__(
        self,
        config: Mapping[str, str] | None = None,
        *,
        data_root: Path = DATA_ROOT,
        force_local: bool | None = None,
    ) -> None:
        self.config = dict(read_config() if config is None else config)
        self.data_root = data_root
        local = _truthy(self.config.get(LOCAL_SERVICES_ENV))
        self.force_local = local if force_local is None else force_local
        self.started: list[ServerHandle] = []

    def up(self) -> tuple[Service, Service]:
        """Return (redis, postgres)."""
        redis_service = postgres_service = None
        if self.force_local:
            log(f"{LOCAL_SERVICES_ENV} is set: starting throwaway servers")
        else:
            redis_service = find_redis(self.config.get(REDIS_URL_ENV))
            postgres_service = find_postgres(self.config.get(DATABASE_URL_ENV))
        missing = []
        if redis_service is None and find_redis_server() is None:
            missing.append("redis")
        if postgres_service is None and find_postgres_bin_dir() is None:
            missing.append("postgres")
        if missing:
            raise MissingBinaries(missing)
        if redis_service is None:
            redis_service = self._start("redis", REDIS_LOCAL_PORT, start_redis)
        if postgres_service is None:
            postgres_service = self._start("postgres", POSTGRES_LOCAL_PORT, start_postgres)
        for service in (redis_service, postgres_service):
            log(f"{service.kind + ':':<10}{redact(service.url)}  ({service.origin})")
        return redis_service, postgres_service

    def _start(self, kind: str, port: int, start: Callable[[Path, int], ServerHandle]) -> Service:
        data_dir = self.data_root / ("redis" if kind == "redis" else "pg")
        log(f"starting a throwaway {kind} on 127.0.0.1:{port}, data in {data_dir}")
        handle = start(data_dir, port)
        self.started.append(handle)
        return Service(kind, handle.url, f"throwaway, pid {handle.pid}", handle=handle)

    def dead_servers(self) -> list[ServerHandle]:
        return [handle for handle in self.started if not handle.is_running()]

    def stop(self) -> None:
        while self.started:
            handle = self.started.pop()
            log(f"stopping the throwaway {handle.name} (pid {handle.pid})")
            handle.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _begin_cleanup()
        self.stop()


def app_database_url(postgres: Service, name: str) -> str:
    """The app's database URL on the found server: the configured URL as is, if that answered."""
    if postgres.configured_url and database_name(postgres.configured_url):
        return postgres.configured_url
    return with_database(postgres.url, name)


# --- Child processes ----------------------------------------------------------------------------


def _child_env(updates: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(updates)
    return env


def _stop_foreground(process: subprocess.Popen[bytes], signum: int) -> None:
    """After a signal: a Ctrl-C reached the child too (same process group); pass others on."""
    _begin_cleanup()
    if signum != signal.SIGINT:
        process.send_signal(signum)
    if not wait_until(lambda: process.poll() is not None, 5):
        process.terminate()
        if not wait_until(lambda: process.poll() is not None, 5):
            process.kill()
    process.wait()


def run_step(name: str, command: list[str], env: Mapping[str, str]) -> tuple[int, float]:
    """Run command in the foreground in the project folder; return (exit code, seconds)."""
    log(f"==> {name}")
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env)
    try:
        code = process.wait()
    except Interrupted as exc:
        _stop_foreground(process, exc.signum)
        raise
    elapsed = time.monotonic() - started
    outcome = "ok" if code == 0 else f"FAILED (exit code {code})"
    log(f"<== {name}: {outcome} in {elapsed:.1f}s")
    return code, elapsed


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is None:  # not yet reaped, so the PID (= group ID) is still ours
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


def _stop_children(children: Sequence[tuple[str, subprocess.Popen[bytes]]]) -> None:
    _begin_cleanup()
    running = [(name, process) for name, process in children if process.poll() is None]
    for name, process in running:
        log(f"stopping {name} (pid {process.pid})")
        _signal_group(process, signal.SIGTERM)
    wait_until(lambda: all(process.poll() is not None for _, process in running), CHILD_GRACE_S)
    for name, process in running:
        if process.poll() is None:
            log(f"{name} did not stop within {CHILD_GRACE_S:.0f}s; killing it")
            _signal_group(process, signal.SIGKILL)
        process.wait()


def _watch(
    children: Sequence[tuple[str, subprocess.Popen[bytes]]],
    stack: DevStack,
    on_ready: Callable[[], bool],
) -> int:
    """Wait until a child or a throwaway server dies (exit code for that) or a signal."""
    ready = False
    while True:
        for name, process in children:
            code = process.poll()
            if code is not None:
                log(f"{name} exited with code {code}; stopping everything")
                return code or 1
        for handle in stack.dead_servers():
            log(f"the throwaway {handle.name} died; see {handle.log_path}; stopping everything")
            stack.started.remove(handle)
            return 1
        ready = ready or on_ready()
        time.sleep(0.2)


def supervise(
    children: Sequence[tuple[str, list[str]]],
    env: Mapping[str, str],
    stack: DevStack,
    on_ready: Callable[[], bool],
) -> int:
    """Start children (each in its own process group, so a Ctrl-C reaches only devstack), wait
    until one dies or a signal comes, then stop them all: SIGTERM, SIGKILL after a grace."""
    started: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for name, command in children:
            log(f"starting {name}: {shlex.join(['python', *command[1:]])}")
            process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, start_new_session=True)
            started.append((name, process))
        return _watch(started, stack, on_ready)
    finally:
        _stop_children(started)


# --- Commands -----------------------------------------------------------------------------------


def _app_env(stack: DevStack, redis_service: Service, postgres_service: Service) -> dict[str, str]:
    """The environment for the app: URLs of the found servers, its database created if missing."""
    configured = stack.config.get(DATABASE_URL_ENV, "")
    name = database_name(configured) or DEFAULT_DATABASE
    if ensure_database(postgres_service.url, name):
        log(f"created database {name}")
    updates = {
        REDIS_URL_ENV: redis_service.url,
        DATABASE_URL_ENV: app_database_url(postgres_service, name),
    }
    if "CLICKTRACK_COOKIE_SECURE" not in stack.config:
        updates["CLICKTRACK_COOKIE_SECURE"] = "false"  # local http
    return _child_env(updates)


def _test_env(redis_service: Service, postgres_service: Service) -> dict[str, str]:
    return _child_env(
        {TEST_REDIS_URL_ENV: redis_service.url, TEST_DATABASE_URL_ENV: postgres_service.url}
    )


def _announcer(stack: DevStack, env: Mapping[str, str]) -> Callable[[], bool]:
    port = int(stack.config.get("CLICKTRACK_PORT", "8000"))

    def announce() -> bool:
        if not port_open(port):
            return False
        log(f"clicktrack is running at http://127.0.0.1:{port}  (Ctrl-C stops everything)")
        log("create an admin key:  .venv/bin/python -m app.cli create-admin-key --name me")
        if stack.started:
            exports = " ".join(
                f"{key}={shlex.quote(env[key])}" for key in (REDIS_URL_ENV, DATABASE_URL_ENV)
            )
            log(f"  (in another shell, first: export {exports})")
        return True

    return announce


def cmd_run(extra: list[str]) -> int:
    config = read_config()
    port = int(config.get("CLICKTRACK_PORT", "8000"))
    if port_open(port):
        raise DevstackError(f"port {port} is already in use; set CLICKTRACK_PORT to another port")
    with DevStack(config) as stack:
        env = _app_env(stack, *stack.up())
        code, _ = run_step("migrate", [PYTHON, "-m", "app.cli", "migrate"], env)
        if code != 0:
            return code
        children = [("web", [PYTHON, "-m", "app.serve"])]
        if (PROJECT_ROOT / "app" / "flusher" / "__main__.py").is_file():
            children.append(("flusher", [PYTHON, "-m", "app.flusher"]))
        return supervise(children, env, stack, _announcer(stack, env))


CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> None:
    """The dashboard's browser test drives Debian's Chromium (never a browser Playwright
    downloads). Install it when it is missing and we may: root, on Debian. Otherwise say so;
    the test then skips with the reason (and fails under CI)."""
    if CHROMIUM.exists():
        return
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or apt is None or not Path("/etc/debian_version").exists():
        log(f"{CHROMIUM} is missing and cannot be installed here (needs root on Debian): "
            "the dashboard's browser test will be skipped")  # fmt: skip
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [apt, "update", "-q"],
        [apt, "install", "-y", "-q", "--no-install-recommends", "chromium"],
    ):
        log(f"installing Chromium for the browser test: {shlex.join(command)}")
        if subprocess.run(command, env=env, check=False).returncode != 0:
            log(f"{shlex.join(command)} failed: the dashboard's browser test will be skipped")
            return


def cmd_test(extra: list[str]) -> int:
    ensure_chromium()
    steps = [
        ("ruff check", [PYTHON, "-m", "ruff", "check", "."]),
        ("ruff format --check", [PYTHON, "-m", "ruff", "format", "--check", "."]),
        ("mypy", [PYTHON, "-m", "mypy"]),
        ("pytest", [PYTHON, "-m", "pytest", *extra]),
    ]
    timings = []
    with DevStack() as stack:
        env = _test_env(*stack.up())
        for name, command in steps:
            code, seconds = run_step(name, command, env)
            timings.append(f"{name} {seconds:.1f}s")
            if code != 0:
                return code
    log("all passed: " + ", ".join(timings))
    return 0


def cmd_services(extra: list[str]) -> int:
    with DevStack() as stack:
        redis_service, postgres_service = stack.up()
        print(f"{REDIS_URL_ENV}={redis_service.url}", flush=True)
        print(f"postgres server: {postgres_service.url}", flush=True)
        started = "; Ctrl-C stops them" if stack.started else " (not started here)"
        log(f"servers are up{started}")
        return _watch([], stack, lambda: True)


def _not_available(what: str, path: Path) -> int:
    log(f"{what} is not available yet: {path.relative_to(PROJECT_ROOT)} does not exist")
    return 1


def cmd_faults(extra: list[str]) -> int:
    suite = PROJECT_ROOT / "tests" / "faults"
    if not suite.is_dir():
        return _not_available("the fault suite", suite)
    with DevStack() as stack:
        env = _test_env(*stack.up())
        env.setdefault("CLICKTRACK_FAULTS", "full")  # every scenario at full length
        code, _ = run_step("fault suite", [PYTHON, "-m", "pytest", "tests/faults", *extra], env)
        return code


def cmd_bench(extra: list[str]) -> int:
    """The benchmark starts Redis and Postgres of its own (nothing else may share them while it
    measures), so only the binaries are needed here."""
    script = PROJECT_ROOT / "bench" / "run.py"
    if not script.is_file():
        return _not_available("the benchmark", script)
    missing = [
        kind
        for kind, found in (("redis", find_redis_server()), ("postgres", find_postgres_bin_dir()))
        if found is None
    ]
    if missing:
        raise MissingBinaries(missing)
    code, _ = run_step("bench", [PYTHON, "-m", "bench.run", *extra], _child_env({}))
    return code


LOADTEST_DATABASE = "clicktrack_loadtest"
LOADTEST_DATA = PROJECT_ROOT / "test-artifacts" / "loadtest-data.json"
LOADTEST_REPORTS = PROJECT_ROOT / "test-artifacts" / "loadtest"
# Defaults of `make loadtest`; ARGS given after -- come later on locust's command line, so
# they win (e.g. make loadtest ARGS="--users 200 --run-time 5m --p95-ms 50").
LOADTEST_LOCUST_ARGS = ["--headless", "--users", "50", "--spawn-rate", "25", "--run-time", "60s"]


def _loadtest_env(
    stack: DevStack, redis_service: Service, postgres_service: Service
) -> dict[str, str]:
    """The app's environment for the load test: its own database and Redis key prefix (the
    developer's data stays apart), on a free port."""
    if ensure_database(postgres_service.url, LOADTEST_DATABASE):
        log(f"created database {LOADTEST_DATABASE}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return _child_env(
        {
            REDIS_URL_ENV: redis_service.url,
            DATABASE_URL_ENV: with_database(postgres_service.url, LOADTEST_DATABASE),
            "CLICKTRACK_KEY_PREFIX": "ctload",
            "CLICKTRACK_HOST": "127.0.0.1",
            "CLICKTRACK_PORT": str(port),
            "CLICKTRACK_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "CLICKTRACK_COOKIE_SECURE": "false",
            "CLICKTRACK_SPOOL_DIR": str(DATA_ROOT / "loadtest-spool"),
        }
    )


def _admin_key(env: Mapping[str, str]) -> str:
    command = [PYTHON, "-m", "app.cli", "create-admin-key", "--name", "loadtest"]
    result = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise DevstackError(f"create-admin-key failed: {result.stderr.strip()[-500:]}")
    return result.stdout.strip().splitlines()[-1]


def _http_ok(url: str) -> bool:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)
    try:
        conn.request("GET", parts.path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def cmd_loadtest(extra: list[str]) -> int:
    """Start the app and a flusher on the development stack, create links through the API,
    run locust headless for a bounded time; exit non-zero if a threshold was missed."""
    locustfile = PROJECT_ROOT / "loadtests" / "locustfile.py"
    if not locustfile.is_file():
        return _not_available("the load test", locustfile)
    if importlib.util.find_spec("locust") is None:
        log("locust is not installed: .venv/bin/pip install -e '.[load]'")
        return 1
    with DevStack() as stack:
        env = _loadtest_env(stack, *stack.up())
        code, _ = run_step("migrate", [PYTHON, "-m", "app.cli", "migrate"], env)
        if code != 0:
            return code
        env["LOADTEST_ADMIN_KEY"] = _admin_key(env)
        base_url = f"http://127.0.0.1:{env['CLICKTRACK_PORT']}"
        started: list[tuple[str, subprocess.Popen[bytes]]] = []
        try:
            for name, module in (("web", "app.serve"), ("flusher", "app.flusher")):
                log(f"starting {name}: python -m {module}")
                process = subprocess.Popen(
                    [PYTHON, "-m", module], cwd=PROJECT_ROOT, env=env, start_new_session=True
                )
                started.append((name, process))
            if not wait_until(lambda: _http_ok(f"{base_url}/healthz"), 30):
                raise DevstackError(f"the app did not answer at {base_url}/healthz")
            setup = [PYTHON, "-m", "loadtests.setup_data", "--host", base_url,
                     "--out", str(LOADTEST_DATA)]  # fmt: skip
            code, _ = run_step("create load test data (API)", setup, env)
            if code != 0:
                return code
            LOADTEST_REPORTS.parent.mkdir(parents=True, exist_ok=True)
            locust = [
                PYTHON, "-m", "locust", "-f", str(locustfile), "--host", base_url,
                "--data-file", str(LOADTEST_DATA), "--csv", str(LOADTEST_REPORTS),
                "--html", f"{LOADTEST_REPORTS}.html", "--only-summary",
                *LOADTEST_LOCUST_ARGS, *extra,
            ]  # fmt: skip
            code, _ = run_step("locust", locust, env)
            for name, process in started:
                if process.poll() is not None:
                    log(f"{name} died during the load test (exit code {process.returncode})")
                    code = code or 1
            rel = LOADTEST_REPORTS.relative_to(PROJECT_ROOT)
            log(f"reports: {rel}_stats.csv, {rel}_failures.csv, {rel}.html")
            return code
        finally:
            _stop_children(started)


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "run": (cmd_run, "migrate, then run the app (and the flusher) until Ctrl-C"),
    "test": (cmd_test, "ruff check, ruff format --check, mypy, pytest [-- PYTEST_ARGS]"),
    "services": (cmd_services, "find or start Redis and Postgres, print them, wait for Ctrl-C"),
    "faults": (cmd_faults, "the fault-injection suite, tests/faults [-- PYTEST_ARGS]"),
    "bench": (cmd_bench, "the benchmark, bench/run.py [-- ARGS]"),
    "loadtest": (cmd_loadtest, "the locust load test, loadtests/locustfile.py [-- ARGS]"),
}
TAKES_EXTRA = {"test", "faults", "bench", "loadtest"}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args:
        split = args.index("--")
        args, extra = args[:split], args[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="devstack.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Arguments after -- go to the tool run (pytest, bench/run.py, locust).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, description=summary)
    options = parser.parse_args(args)
    if extra and options.command not in TAKES_EXTRA:
        parser.error(f"{options.command} takes no arguments after --")
    install_signal_handlers()
    try:
        return COMMANDS[options.command][0](extra)
    except Interrupted as exc:
        log(f"stopped ({exc})")
        return 128 + exc.signum
    except DevstackError as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
