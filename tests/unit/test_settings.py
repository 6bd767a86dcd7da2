from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.metrics import reader_allowed
from app.settings import SERVICES_ENV, Settings


def test_allowed_hosts_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKTRACK_ALLOWED_HOSTS", " Example.com, *.shop.example.net ,")
    assert Settings().allowed_hosts == ("example.com", "*.shop.example.net")


@pytest.mark.parametrize("pattern", ["*", "*.", "a.*.com", "example.com/x", "example.com:80"])
def test_bad_host_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValidationError, match="bad allowed host"):
        Settings(allowed_hosts=(pattern,))


def test_production_refuses_the_development_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKTRACK_ENVIRONMENT", "production")
    monkeypatch.delenv("CLICKTRACK_COOKIE_SECRET", raising=False)
    with pytest.raises(ValidationError, match="COOKIE_SECRET"):
        Settings()
    monkeypatch.setenv("CLICKTRACK_COOKIE_SECRET", "x" * 40)
    assert Settings().cookie_secret.get_secret_value() == "x" * 40


def test_the_largest_order_amount(monkeypatch: pytest.MonkeyPatch) -> None:
    assert str(Settings().max_order_amount) == "1000000.00"
    monkeypatch.setenv("CLICKTRACK_MAX_ORDER_AMOUNT", "2500.50")
    assert str(Settings().max_order_amount) == "2500.50"
    # The money columns are sized for sums of orders up to 1,000,000,000.00 (migration 022).
    for bad in ("1000000000.01", "0", "-1", "10.001"):
        monkeypatch.setenv("CLICKTRACK_MAX_ORDER_AMOUNT", bad)
        with pytest.raises(ValidationError, match="max_order_amount"):
            Settings()


def test_services_env_is_read_below_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` writes the servers it uses to .data/services.env: a command run beside it
    reaches them with nothing exported; a variable in the environment still wins, and the file
    wins over .env."""
    monkeypatch.chdir(tmp_path)
    for name in ("CLICKTRACK_REDIS_URL", "CLICKTRACK_DATABASE_URL", "CLICKTRACK_KEY_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text(
        "CLICKTRACK_REDIS_URL=redis://dotenv:6379/0\nCLICKTRACK_KEY_PREFIX=fromdotenv\n"
    )
    services = tmp_path / SERVICES_ENV
    services.parent.mkdir()
    services.write_text(
        "# devstack pid 1\n"
        "CLICKTRACK_REDIS_URL='redis://127.0.0.1:56379/0'\n"
        "CLICKTRACK_DATABASE_URL='postgresql://postgres@127.0.0.1:55432/clicktrack'\n"
    )
    settings = Settings()
    assert settings.redis_url == "redis://127.0.0.1:56379/0"
    assert settings.database_url == "postgresql://postgres@127.0.0.1:55432/clicktrack"
    assert settings.key_prefix == "fromdotenv"
    monkeypatch.setenv("CLICKTRACK_DATABASE_URL", "postgresql://postgres@db:5432/mine")
    assert Settings().database_url == "postgresql://postgres@db:5432/mine"
    services.unlink()
    assert Settings().redis_url == "redis://dotenv:6379/0"


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, "http://127.0.0.1:8000"),
        (None, "8200", "http://127.0.0.1:8200"),
        ("0.0.0.0", "8300", "http://127.0.0.1:8300"),
        ("::", "8000", "http://127.0.0.1:8000"),
        ("::1", "8000", "http://[::1]:8000"),
        ("10.1.2.3", "80", "http://10.1.2.3:80"),
    ],
)
def test_public_base_url_follows_the_bound_host_and_port(
    monkeypatch: pytest.MonkeyPatch, host: str | None, port: str | None, expected: str
) -> None:
    monkeypatch.delenv("CLICKTRACK_PUBLIC_BASE_URL", raising=False)
    for name, value in (("CLICKTRACK_HOST", host), ("CLICKTRACK_PORT", port)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert Settings(_env_file=None).public_base_url == expected
    monkeypatch.setenv("CLICKTRACK_PUBLIC_BASE_URL", "https://s.example.com")
    assert Settings(_env_file=None).public_base_url == "https://s.example.com"


def test_metrics_listen_on_loopback_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings(_env_file=None)
    assert defaults.flusher_metrics_host == "127.0.0.1"
    assert defaults.metrics_host == "127.0.0.1" and defaults.metrics_port == 0
    assert defaults.metrics_allow == ("127.0.0.1/32", "::1/128")
    monkeypatch.setenv("CLICKTRACK_METRICS_ALLOW", " 10.0.0.0/8, 192.168.1.7 ,")
    assert Settings(_env_file=None).metrics_allow == ("10.0.0.0/8", "192.168.1.7/32")
    monkeypatch.setenv("CLICKTRACK_METRICS_ALLOW", "")
    assert Settings(_env_file=None).metrics_allow == ()
    monkeypatch.setenv("CLICKTRACK_METRICS_ALLOW", "example.com")
    with pytest.raises(ValidationError, match="metrics_allow"):
        Settings(_env_file=None)


def test_a_metrics_reader_is_judged_by_its_address() -> None:
    loopback = ("127.0.0.1/32", "::1/128")
    assert reader_allowed("127.0.0.1", loopback)
    assert reader_allowed("::1", loopback)
    assert reader_allowed("::ffff:127.0.0.1", loopback)
    assert not reader_allowed("10.0.0.5", loopback)
    assert not reader_allowed(None, loopback)
    assert not reader_allowed("testclient", loopback)
    assert reader_allowed("10.0.0.5", ("10.0.0.0/8",))


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("10.0.0.1/8", "has host bits set"),
        ("10.0.0.0/33", "10.0.0.0/33"),
        ("example.com", "does not appear to be an IPv4 or IPv6 network"),
    ],
)
def test_postback_networks_are_read_strictly(
    monkeypatch: pytest.MonkeyPatch, value: str, words: str
) -> None:
    """A network wider than the operator wrote would let the sender reach more than meant."""
    monkeypatch.setenv("CLICKTRACK_POSTBACK_ALLOW_NETWORKS", value)
    with pytest.raises(ValidationError, match=words):
        Settings()
    monkeypatch.setenv("CLICKTRACK_POSTBACK_ALLOW_NETWORKS", "10.0.0.1/32, fd00::/8")
    assert Settings().postback_allow_networks == ("10.0.0.1/32", "fd00::/8")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis+cluster://", "expected host:port"),
        ("redis+cluster://127.0.0.1:abc", "expected host:port"),
        ("redis+cluster://127.0.0.1:99999", "a port from 1 to 65535"),
        ("redis+cluster://10.0.0.1:6379,10.0.0.2", "found '10.0.0.2'"),
        ("redis+sentinel://127.0.0.1:26379", "the name is missing"),
        ("redis+sentinel://127.0.0.1:26379/main/x", "a database number"),
        ("foo://127.0.0.1:6379", "expected redis://"),
    ],
)
def test_redis_urls_are_checked_when_read(
    monkeypatch: pytest.MonkeyPatch, url: str, words: str
) -> None:
    """A URL no client could open is a settings error in words, not a crash at start."""
    monkeypatch.setenv("CLICKTRACK_REDIS_URL", url)
    with pytest.raises(ValidationError, match=words):
        Settings()


def test_cluster_and_sentinel_urls_are_read() -> None:
    seeds = "redis+cluster://u:p@10.0.0.1:6379,[fd00::2]:6380"
    assert Settings(redis_url=seeds).redis_url == seeds
    assert Settings(redis_url="redis+sentinel://s1:26379,s2:26379/main/2").redis_url
