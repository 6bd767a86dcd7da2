from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings


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
