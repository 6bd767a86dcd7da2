"""Attribution's rules alone: the time window around the click, the merchant's hosts, and
the host patterns they are written in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.core.hosts import host_allowed, normalise_host_pattern
from app.orders.attribution import (
    DEFAULT_RULES,
    AttributionRules,
    UnattributedReason,
    judge,
    link_host,
)
from app.settings import ConfigError, Settings, load_settings

CLICK = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
SHOP = ("shop.example.com",)


def reason(ordered_at: datetime, rules: AttributionRules = DEFAULT_RULES) -> str | None:
    found = judge(ordered_at, CLICK, rules, "shop.example.com", SHOP)
    return None if found is None else found.value


def test_the_defaults_are_the_settings_defaults() -> None:
    settings = Settings()
    assert DEFAULT_RULES.window == timedelta(days=settings.attribution_window_days)
    assert DEFAULT_RULES.skew == timedelta(seconds=settings.attribution_clock_skew_s)
    assert (DEFAULT_RULES.window, DEFAULT_RULES.skew) == (timedelta(days=30), timedelta(minutes=5))


@pytest.mark.parametrize(
    ("after_click", "expected"),
    [
        (timedelta(days=-3650), "order_before_click"),  # the 2016 order on today's click
        (timedelta(minutes=-5, seconds=-1), "order_before_click"),
        (timedelta(minutes=-5), None),  # the merchant's clock may run 5 minutes behind
        (timedelta(0), None),
        (timedelta(days=30), None),  # the window's last instant is in it
        (timedelta(days=30, microseconds=1), "outside_attribution_window"),
        (timedelta(days=400), "outside_attribution_window"),
    ],
)
def test_an_order_is_placed_after_its_click_and_within_the_window(
    after_click: timedelta, expected: str | None
) -> None:
    assert reason(CLICK + after_click) == expected


def test_the_window_and_tolerance_are_the_orders_own() -> None:
    tight = AttributionRules(window=timedelta(days=1), skew=timedelta(0))
    assert reason(CLICK + timedelta(days=2), tight) == "outside_attribution_window"
    assert reason(CLICK - timedelta(seconds=1), tight) == "order_before_click"
    assert reason(CLICK + timedelta(hours=23), tight) is None


@pytest.mark.parametrize(
    ("host", "merchant_hosts", "owned"),
    [
        ("shop.example.com", ("shop.example.com",), True),
        ("shop.example.com", ("*.example.com",), True),
        ("a.b.example.com", ("*.example.com",), True),
        ("example.com", ("*.example.com",), False),  # the wildcard needs a subdomain
        ("shop.example.com", ("example.com",), False),
        ("evilexample.com", ("*.example.com",), False),
        ("shop.example.net", ("shop.example.com", "*.example.org"), False),
        ("shop.example.net", (), True),  # no hosts: any host, as before merchants had them
        (None, ("shop.example.com",), False),  # a click whose link is gone
    ],
)
def test_a_merchant_attributes_only_to_links_to_its_hosts(
    host: str | None, merchant_hosts: tuple[str, ...], owned: bool
) -> None:
    found = judge(CLICK, CLICK, DEFAULT_RULES, host, merchant_hosts)
    assert found is (None if owned else UnattributedReason.click_not_for_this_merchant)


def test_another_merchants_link_is_named_before_the_time() -> None:
    found = judge(CLICK - timedelta(days=1), CLICK, DEFAULT_RULES, "x.example.org", SHOP)
    assert found is UnattributedReason.click_not_for_this_merchant


@pytest.mark.parametrize(
    ("destination", "host"),
    [
        ("https://shop.example.com/item/1", "shop.example.com"),
        ("https://shop.example.com:8443/x?y=1#z", "shop.example.com"),
        ("http://[2001:db8::1]:8080/x", "2001:db8::1"),
        ("http://192.0.2.1/", "192.0.2.1"),
        ("https://xn--bcher-kva.example.com/", "xn--bcher-kva.example.com"),
        # stored before destinations were normalised: capitals, Unicode, a trailing dot
        ("https://Shop.Example.COM./x", "shop.example.com"),
        ("https://Bücher.example.com/x", "xn--bcher-kva.example.com"),
        ("not a url", None),
        (None, None),
    ],
)
def test_the_host_of_a_links_destination(destination: str | None, host: str | None) -> None:
    assert link_host(destination) == host


@pytest.mark.parametrize(
    ("pattern", "normal"),
    [
        ("shop.example.com", "shop.example.com"),
        ("  Shop.Example.COM. ", "shop.example.com"),
        ("*.example.com", "*.example.com"),
        ("*.Bücher.example", "*.xn--bcher-kva.example"),
        ("*.xn--bcher-kva.example", "*.xn--bcher-kva.example"),
        ("192.0.2.1", "192.0.2.1"),
        ("[2001:DB8::1]", "2001:db8::1"),
    ],
)
def test_host_patterns_in_their_normal_form(pattern: str, normal: str) -> None:
    assert normalise_host_pattern(pattern) == normal
    host = "www." + normal[2:] if normal.startswith("*.") else normal
    assert host_allowed(host, (normal,))


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "empty label"),
        ("*", "a '*' may only open it"),
        ("*.", "empty label"),
        ("shop.*.example.com", "a '*' may only open it"),
        ("**.example.com", "a '*' may only open it"),
        ("https://shop.example.com", "without a scheme, port or path"),
        ("shop.example.com/path", "without a scheme, port or path"),
        ("shop.example.com:8080", "without a scheme, port or path"),
        ("shop example.com", "not a valid domain name"),
        ("*.192.0.2.1", "needs a domain name"),
        ("shop.123", "neither a domain name nor an IPv4 address"),
    ],
)
def test_bad_host_patterns_are_refused_in_words(pattern: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalise_host_pattern(pattern)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CLICKTRACK_ATTRIBUTION_WINDOW_DAYS", "0"),
        ("CLICKTRACK_ATTRIBUTION_WINDOW_DAYS", "366"),
        ("CLICKTRACK_ATTRIBUTION_WINDOW_DAYS", "a month"),
        ("CLICKTRACK_ATTRIBUTION_CLOCK_SKEW_S", "-1"),
    ],
)
def test_bad_attribution_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert variable in caught.value.describe()
