"""Discovery: find Redis and Postgres (the configured URL, the default port) or start throwaway
ones (DevStack), in the order the package docstring describes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from devstack.base import (
    DATA_ROOT,
    DATABASE_URL_ENV,
    DEFAULT_DATABASE,
    LOCAL_SERVICES_ENV,
    MAINTENANCE_DATABASE,
    POSTGRES_DEFAULT_URL,
    POSTGRES_LOCAL_PORT,
    REDIS_DEFAULT_URL,
    REDIS_LOCAL_PORT,
    REDIS_URL_ENV,
    MissingBinaries,
    log,
    read_config,
)
from devstack.net import database_name, redact, with_database
from devstack.probes import postgres_problem, redis_problem
from devstack.servers import (
    ServerHandle,
    find_postgres_bin_dir,
    find_redis_server,
    start_postgres,
    start_redis,
)
from devstack.signals import begin_cleanup


@dataclass
class Service:
    """A Redis or Postgres to use. For Postgres, url names the maintenance database."""

    kind: str
    url: str
    origin: str
    handle: ServerHandle | None = None
    configured_url: str | None = None  # the configured Postgres URL, when that one answered


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


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
    """Finds or starts Redis and Postgres (see the package docstring); stop() stops only the
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
        log(f"{'redis:':<10}{redact(redis_service.url)}  ({redis_service.origin})")
        used = self.database_url(postgres_service)  # the app's database, not the maintenance one
        log(f"{'postgres:':<10}{redact(used)}  ({postgres_service.origin})")
        return redis_service, postgres_service

    def database_name(self) -> str:
        """The app's database: the one the configured URL names, else ``DEFAULT_DATABASE``."""
        return database_name(self.config.get(DATABASE_URL_ENV, "")) or DEFAULT_DATABASE

    def database_url(self, postgres: Service) -> str:
        """The URL the app uses on the found Postgres (``app_database_url``)."""
        return app_database_url(postgres, self.database_name())

    def _start(self, kind: str, port: int, start: Callable[[Path, int], ServerHandle]) -> Service:
        data_dir = self.data_root / ("redis" if kind == "redis" else "pg")
        log(f"starting a throwaway {kind} on 127.0.0.1:{port}, data in {data_dir}")
        handle = start(data_dir, port)
        self.started.append(handle)
        return Service(kind, handle.url, f"throwaway, pid {handle.pid}", handle=handle)

    def dead_servers(self) -> list[ServerHandle]:
        """The throwaway servers started here that are no longer running."""
        return [handle for handle in self.started if not handle.is_running()]

    def stop(self) -> None:
        """Stop the throwaway servers started here, the last started first."""
        while self.started:
            handle = self.started.pop()
            log(f"stopping the throwaway {handle.name} (pid {handle.pid})")
            handle.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        begin_cleanup()
        self.stop()


def app_database_url(postgres: Service, name: str) -> str:
    """The app's database URL on the found server: the configured URL as is, if that answered."""
    if postgres.configured_url and database_name(postgres.configured_url):
        return postgres.configured_url
    return with_database(postgres.url, name)
