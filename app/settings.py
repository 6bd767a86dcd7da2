"""The one settings object, read from ``CLICKTRACK_*`` environment variables (or env files).

Validated once at start; the app and the flusher receive it explicitly.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import idna
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.errors import ClickTrackError
from app.redis_urls import check_redis_url

DEVELOPMENT_COOKIE_SECRET = "development-only-cookie-secret-change-me"


class Environment(StrEnum):
    development = "development"
    production = "production"


class IpMode(StrEnum):
    full = "full"
    truncate = "truncate"
    hash = "hash"


# Env files, the later winning; environment variables win over both. SERVICES_ENV holds the
# Redis and Postgres URLs `make run` uses while it runs (scripts/devstack/servicesenv.py).
SERVICES_ENV = ".data/services.env"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLICKTRACK_", env_file=(".env", SERVICES_ENV), extra="ignore", frozen=True
    )

    environment: Environment = Environment.development

    # Where things live.
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/clicktrack"
    key_prefix: str = Field(default="ct", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=256)
    # Unset: http:// and the address the app binds (127.0.0.1 for 0.0.0.0 or ::) and port.
    public_base_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://[^/?#]+$")

    # Postgres as the web app uses it. Opening a connection or waiting for one from the pool
    # past database_timeout_ms, or one query past database_command_timeout_ms, answers 503.
    database_timeout_ms: int = Field(default=2000, ge=1)
    database_command_timeout_ms: int = Field(default=5000, ge=1)

    # The session cookie.
    cookie_secret: SecretStr = SecretStr(DEVELOPMENT_COOKIE_SECRET)
    cookie_name: str = Field(default="ct_sid", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    cookie_domain: str | None = None
    cookie_secure: bool = True
    cookie_max_age: int | None = Field(default=None, ge=1)

    # Links and the redirect.
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ("example.com", "*.example.com")
    click_id_param: str = Field(default="aff_click_id", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    link_cache_size: int = Field(default=100_000, ge=1)
    link_cache_ttl_s: float = Field(default=60.0, gt=0)
    link_negative_ttl_s: float = Field(default=2.0, gt=0)
    # The redirect's Postgres read-through of a link not in its cache nor the Redis mirror:
    # at most this long (a read slot, the pool's acquire and the query), then the link's
    # expired copy or a 503; at most this many at once (the pool's other connections stay
    # the API's when Postgres hangs).
    link_load_timeout_ms: int = Field(default=500, ge=1)
    link_load_concurrency: int = Field(default=4, ge=1)
    # Write the link mirror record unversioned, as releases before the versioned record did
    # (they cannot read it): only during a rolling upgrade from one of them.
    link_mirror_legacy_writes: bool = False

    # What a request may bring: a longer query string gets a 414, a larger body a 413.
    max_query_bytes: int = Field(default=8192, ge=256)
    max_body_bytes: int = Field(default=65_536, ge=1024)

    # Traffic quality: which flags are raised (a flagged click is stored, never billed).
    flag_bots: bool = True
    flag_prefetch: bool = True
    flag_iframe: bool = True
    flag_head: bool = True
    duplicate_window_s: float = Field(default=30.0, ge=0)
    ip_clicks_per_minute: int = Field(default=20, ge=0)
    bot_patterns_file: Path | None = None

    # Privacy.
    ip_mode: IpMode = IpMode.full
    ip_hash_secret: SecretStr | None = None
    click_retention_days: int = Field(default=0, ge=0)
    forwarded_allow_ips: str | None = None

    # Traffic dimensions (issue 19), resolved by the flusher. ``dimensions`` off stores none
    # (the columns stay NULL): to measure their cost, or to shed it in an emergency.
    dimensions: bool = True
    # An operator's MaxMind-format database (country, ASN), read before the embedded
    # registry data; checked when the flusher starts (web pods need not mount it). Read
    # from CLICKTRACK_GEO_DATABASE, the name the docs give; the field name works in code.
    geo_database_path: Path | None = Field(
        default=None, validation_alias=AliasChoices("CLICKTRACK_GEO_DATABASE", "geo_database_path")
    )
    # The country header a trusted CDN or ingress sets (``CF-IPCountry``): the redirect
    # believes it only from a direct peer in forwarded_allow_ips (app/edge/proxy.py), and
    # its valid value is the click's country, for link rules and storage alike (record
    # ``cc``; docs/operations.md, "Traffic dimensions"). The proxy must overwrite it.
    country_header: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,64}$")

    # Orders and money.
    period_timezone: str = "UTC"
    postback_max_skew_s: int = Field(default=300, ge=1, le=86_400)
    # The largest order amount a postback may report, in US dollars (422 above it). Money
    # columns are sized for sums of orders up to 1,000,000,000.00 (migrations/022).
    max_order_amount: Decimal = Field(
        default=Decimal("1000000.00"), gt=0, le=Decimal("1000000000.00"), decimal_places=2
    )
    # Attribution (docs/commissions.md §2): an order placed more than this many days after
    # its click, or more than this many seconds before it (the merchant's clock against the
    # server's), is kept unattributed.
    attribution_window_days: int = Field(default=30, ge=1, le=365)
    attribution_clock_skew_s: int = Field(default=300, ge=0, le=86_400)
    # Order fraud rules (docs/commissions.md, "Order fraud rules"): a matching order is held
    # for review. Each is off at 0 / false. Seconds from click to order; orders (the judged
    # one included) from one session or click address in the window of hours before it.
    fraud_min_click_to_order_s: int = Field(default=0, ge=0, le=86_400)
    fraud_max_orders_per_session: int = Field(default=0, ge=0, le=100_000)
    fraud_max_orders_per_address: int = Field(default=0, ge=0, le=100_000)
    fraud_orders_window_h: int = Field(default=24, ge=1, le=8760)
    fraud_hold_flagged_clicks: bool = False
    fraud_repeat_new_buyer: bool = False
    # Withdrawals (docs/commissions.md §5): requested on days 1 to this day of a month ("on or
    # before the 20th"); only what was booked before the current calendar month ("Fees
    # accrued in the preceding calendar months"); due about this many days after the request.
    withdrawal_last_day: int = Field(default=20, ge=1, le=31)
    withdrawal_preceding_months_only: bool = True
    withdrawal_payment_days: int = Field(default=30, ge=0, le=366)

    # Durable write of clicks: group commit to Redis, spool on disk when Redis fails.
    redis_timeout_ms: int = Field(default=250, ge=1)
    # Every Redis client of every process (app/core/redis.py): opening a connection, and one
    # reply to a command that has no tighter bound of its own (a flusher adds its block).
    redis_connect_timeout_ms: int = Field(default=2000, ge=1)
    redis_socket_timeout_ms: int = Field(default=5000, ge=1)
    # Replica acknowledgement (docs/reliability.md): a batch is answered only once this many
    # replicas confirm it (WAIT, once per batch, in its round trip), else it goes to the
    # spool too; 0: off (replication stays asynchronous). WAIT's timeout in ms (0 would
    # wait for ever): a batch may wait redis_timeout_ms plus this.
    redis_min_replicas: int = Field(default=0, ge=0, le=16)
    redis_replica_timeout_ms: int = Field(default=100, ge=1, le=5000)
    spool_dir: Path = Path(".data/spool")
    spool_fsync: bool = False
    # A spool file is closed past this size and another started (bytes): no file grows
    # without bound in a long Redis outage, and the closed ones can be replayed at once.
    spool_file_max_bytes: int = Field(default=64 * 1024 * 1024, ge=4096)

    # Flusher.
    flush_batch_size: int = Field(default=2000, ge=1)
    flush_block_ms: int = Field(default=200, ge=1)
    flush_loops: int = Field(default=1, ge=1, le=16)
    claim_idle_ms: int = Field(default=30_000, ge=100)
    consumer_name: str | None = None
    stream_shards: int = Field(default=1, ge=1, le=1024)
    flusher_shards: Annotated[tuple[int, ...], NoDecode] = ()
    flusher_metrics_port: int = Field(default=9101, ge=0, le=65535)
    flusher_metrics_host: str = "127.0.0.1"

    # The web app's metrics. /metrics on the app's own (public) port answers only clients in
    # metrics_allow (loopback by default; empty: nobody); metrics_port, when set, serves them
    # on a port of their own at metrics_host, for a scraper on another host.
    metrics_allow: Annotated[tuple[str, ...], NoDecode] = ("127.0.0.1/32", "::1/128")
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # Liveness: the flusher's event loop rewrites this file every second or so;
    # `python -m app.flusher --check` fails once it is older than the max age.
    flusher_heartbeat_file: Path = Path("/tmp/clicktrack-flusher.heartbeat")
    flusher_heartbeat_max_age_s: float = Field(default=30.0, ge=2)
    # Consumers of the group idle this long with nothing pending are deleted (0: never).
    consumer_prune_idle_s: float = Field(default=3600.0, ge=0)

    # Outbound postbacks and webhooks (docs/postbacks.md), sent by `python -m app.sender`.
    # Timeouts of one attempt (ms); retries back off from the first delay, doubling up to the
    # max, with jitter, and give up this long after the event was queued (s). Destinations
    # resolving to loopback, private, link-local, multicast or reserved addresses are refused
    # unless postback_allow_private is set, or the address is in postback_allow_networks
    # (cloud metadata addresses only through the latter).
    postback_connect_timeout_ms: int = Field(default=3000, ge=1, le=60_000)
    postback_timeout_ms: int = Field(default=10_000, ge=1, le=120_000)
    postback_retry_first_s: float = Field(default=10.0, gt=0, le=3600)
    postback_retry_max_s: float = Field(default=3600.0, gt=0, le=86_400)
    postback_give_up_s: float = Field(default=86_400.0, gt=0, le=30 * 86_400)
    postback_endpoint_concurrency: int = Field(default=4, ge=1, le=256)
    postback_sender_concurrency: int = Field(default=64, ge=1, le=4096)
    postback_allow_private: bool = False
    postback_allow_networks: Annotated[tuple[str, ...], NoDecode] = ()
    # Finished deliveries (with their attempts and events) and received merchant postbacks
    # older than this many days are deleted, hourly by each sender and by `prune-postbacks`
    # (app/postbacks/retention.py). 0: kept forever; at most 100 years, as the CLI's --days.
    postback_retention_days: int = Field(default=30, ge=0, le=36_500)
    sender_metrics_port: int = Field(default=9102, ge=0, le=65535)
    sender_metrics_host: str = "127.0.0.1"
    sender_heartbeat_file: Path = Path("/tmp/clicktrack-sender.heartbeat")
    sender_heartbeat_max_age_s: float = Field(default=30.0, ge=2)

    @field_validator("postback_allow_networks", mode="before")
    @classmethod
    def _split_postback_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("postback_allow_networks")
    @classmethod
    def _check_postback_networks(cls, networks: tuple[str, ...]) -> tuple[str, ...]:
        # Strict: 10.0.0.1/8 is refused, not read as 10.0.0.0/8: the operator may have meant
        # one host (10.0.0.1/32), and a network wider than meant lets the sender reach it.
        try:
            return tuple(str(ip_network(network, strict=True)) for network in networks)
        except ValueError as exc:
            raise ValueError(
                f"{exc}: use networks such as 10.0.0.0/8, 10.0.0.1/32 or fd00::/8"
            ) from None

    @model_validator(mode="before")
    @classmethod
    def _default_public_base_url(cls, data: object) -> object:
        if isinstance(data, dict) and not data.get("public_base_url"):
            host = str(data.get("host") or "127.0.0.1")
            port = data.get("port") or 8000
            data = {**data, "public_base_url": f"http://{url_host(host)}:{port}"}
        return data

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, url: str) -> str:
        return check_redis_url(url)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, url: str) -> str:
        if urlsplit(url).scheme not in ("postgresql", "postgres"):
            raise ValueError("expected postgresql://")
        return url

    @field_validator("bot_patterns_file")
    @classmethod
    def _check_patterns_file(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"{path} is not a readable file")
        return path

    @field_validator("period_timezone")
    @classmethod
    def _check_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}: use an IANA name such as UTC") from None
        return name

    @property
    def period_tz(self) -> ZoneInfo:
        return ZoneInfo(self.period_timezone)

    @field_validator("flusher_shards", mode="before")
    @classmethod
    def _split_shards(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(part) for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _shards_exist(self) -> Settings:
        for shard in self.flusher_shards:
            if not 0 <= shard < self.stream_shards:
                raise ValueError(
                    f"CLICKTRACK_FLUSHER_SHARDS: shard {shard} is not below "
                    f"CLICKTRACK_STREAM_SHARDS ({self.stream_shards})"
                )
        return self

    def shards_to_flush(self) -> tuple[int, ...]:
        return self.flusher_shards or tuple(range(self.stream_shards))

    @field_validator("metrics_allow", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("metrics_allow")
    @classmethod
    def _check_networks(cls, networks: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return tuple(str(ip_network(network, strict=False)) for network in networks)
        except ValueError as exc:
            raise ValueError(f"{exc}: use addresses or networks such as 10.0.0.0/8") from None

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip().lower() for part in value.split(",") if part.strip())
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        """Each pattern in the ASCII form destinations are compared in (IDNA, UTS #46: see
        app/links/urls.py), so ``*.bücher.example`` and ``*.xn--bcher-kva.example`` are one
        pattern."""
        normalised = []
        for host in hosts:
            wildcard, bare = ("*.", host[2:]) if host.startswith("*.") else ("", host)
            try:
                ascii_host = idna.encode(bare.removesuffix("."), uts46=True, std3_rules=True)
            except (idna.IDNAError, UnicodeError):
                raise ValueError(
                    f"bad allowed host pattern {host!r}: use example.com or *.example.com"
                ) from None
            normalised.append(wildcard + ascii_host.decode("ascii"))
        return tuple(normalised)

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment is Environment.production:
            secret = self.cookie_secret.get_secret_value()
            if secret == DEVELOPMENT_COOKIE_SECRET or len(secret) < 32:
                raise ValueError(
                    "CLICKTRACK_COOKIE_SECRET must be set to at least 32 random characters "
                    "in production"
                )
        return self


def url_host(bind_host: str) -> str:
    """The host of a URL reaching a server bound to bind_host: a wildcard address is reached
    on loopback; an IPv6 address is bracketed."""
    if bind_host in ("0.0.0.0", "", "::", "[::]"):
        return "127.0.0.1"
    if ":" in bind_host and not bind_host.startswith("["):
        return f"[{bind_host}]"
    return bind_host


class ConfigError(ClickTrackError):
    """The environment does not make valid settings; the message names each variable."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = "_".join(str(part) for part in err["loc"]).upper()
            name = f"CLICKTRACK_{field}" if field else "settings"
            lines.append(f"{name}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("bad configuration:\n  " + "\n  ".join(lines)) from None
