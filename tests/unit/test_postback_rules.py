"""The outbound postbacks' pure rules: templates and macros, destinations, retries, which
events an order's change makes, the webhook signature."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from ipaddress import ip_address

import pytest

from app.postbacks import signing
from app.postbacks.destinations import DestinationRules, written_refusal
from app.postbacks.events import EventType, OrderFacts, order_events
from app.postbacks.queue import Claimed
from app.postbacks.retries import next_try, retry_delay
from app.postbacks.templates import MACROS, TemplateError, check_url, fill
from app.sender.http import build_request

E = EventType


def test_macros_are_filled_percent_encoded() -> None:
    template = "https://t.example.com/pb?cid={click_id}&af={af}&s={status}&x={cv}"
    filled = fill(template, {"click_id": "c-1", "af": "a b&c=d/é", "status": "completed"})
    assert filled == "https://t.example.com/pb?cid=c-1&af=a%20b%26c%3Dd%2F%C3%A9&s=completed&x="


def test_every_documented_macro_passes_the_check() -> None:
    template = "https://t.example.com/pb?" + "&".join(f"{m}={{{m}}}" for m in MACROS)
    assert check_url(template, macros_allowed=True) == template
    assert {"click_id", "af", "cn", "cv", "dp", "order_id", "amount", "currency"} <= set(MACROS)
    assert {"commission", "status", "event", "event_id", "time"} <= set(MACROS)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://t.example.com/{nope}", "unknown macro {nope}"),
        ("javascript:alert(1)", "must start with https:// or http://"),
        ("https://t.example.com/a b", "must not contain spaces"),
        ("https://t.example.com:99999/", "not a URL"),
        ("https:///pb", "has no host"),
        ("https://t.example.com/#{af}", "fragment"),
        ("https://t.example.com/}", "does not enclose a macro"),
    ],
)
def test_templates_refused_in_plain_words(url: str, words: str) -> None:
    with pytest.raises(TemplateError) as caught:
        check_url(url, macros_allowed=True)
    assert words in caught.value.message
    assert caught.value.field == "url"


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("127.0.0.1", "destination 127.0.0.1 is a loopback address"),
        ("::1", "destination ::1 is a loopback address"),
        ("::ffff:127.0.0.1", "destination 127.0.0.1 is a loopback address"),
        ("10.1.2.3", "destination 10.1.2.3 is a private address"),
        ("192.168.0.1", "destination 192.168.0.1 is a private address"),
        ("169.254.169.254", "destination 169.254.169.254 is a cloud metadata address"),
        ("fd00:ec2::254", "destination fd00:ec2::254 is a cloud metadata address"),
        ("169.254.1.1", "destination 169.254.1.1 is a link-local address"),
        ("224.0.0.1", "destination 224.0.0.1 is a multicast address"),
        ("0.0.0.0", "destination 0.0.0.0 is an unspecified address"),
        ("100.64.0.1", "destination 100.64.0.1 is not a public address"),
    ],
)
def test_only_public_destinations_by_default(address: str, words: str) -> None:
    assert DestinationRules().refusal(ip_address(address)) == words


def test_the_operator_allows_more() -> None:
    private = DestinationRules(allow_private=True)
    assert private.refusal(ip_address("10.1.2.3")) is None
    assert private.refusal(ip_address("169.254.169.254")) is not None  # never by that one
    listed = DestinationRules(allow_networks=("169.254.169.254/32", "127.0.0.0/8"))
    assert listed.refusal(ip_address("169.254.169.254")) is None
    assert listed.refusal(ip_address("127.0.0.5")) is None
    assert listed.refusal(ip_address("10.0.0.1")) is not None
    assert DestinationRules().refusal(ip_address("93.184.216.34")) is None


def test_order_events() -> None:
    new = OrderFacts(True, "completed", Decimal("10.00"))
    assert order_events(None, new) == [E.order_attributed, E.order_completed]
    assert order_events(None, OrderFacts(False, "completed", Decimal(10))) == []
    waiting = OrderFacts(False, "incomplete", Decimal(10))
    assert order_events(None, OrderFacts(True, "incomplete", Decimal(10))) == [E.order_attributed]
    assert order_events(waiting, new) == [E.order_attributed, E.order_completed]
    assert order_events(new, new) == []  # a repeat
    lower = OrderFacts(True, "partially_refunded", Decimal("6.00"))
    assert order_events(new, lower) == [E.order_partially_refunded]
    lowest = OrderFacts(True, "partially_refunded", Decimal("3.00"))
    assert order_events(lower, lowest) == [E.order_partially_refunded]
    assert order_events(lowest, lowest) == []
    assert order_events(lowest, OrderFacts(True, "refunded", Decimal(0))) == [E.order_refunded]
    assert order_events(new, OrderFacts(True, "invalid", Decimal(0))) == []


def test_retries_back_off_with_jitter_then_give_up() -> None:
    assert retry_delay(1, 10, 3600, lambda: 0.0) == 5.0
    assert retry_delay(1, 10, 3600, lambda: 1.0) == 10.0
    assert retry_delay(4, 10, 3600, lambda: 1.0) == 80.0
    assert retry_delay(40, 10, 3600, lambda: 1.0) == 3600.0
    queued = datetime(2026, 1, 1, tzinfo=UTC)
    now = queued + timedelta(hours=23, minutes=59)

    def after(attempts: int, at: datetime) -> datetime | None:
        return next_try(
            attempts, queued, at, first_s=10.0, max_s=3600.0, give_up_s=86_400.0, rand=lambda: 1.0
        )

    assert after(1, queued) == queued + timedelta(seconds=10)
    assert after(20, now) is None


def test_a_webhook_is_signed_over_timestamp_and_body() -> None:
    claimed = Claimed(
        1,
        uuid.UUID(int=7),
        "order_completed",
        1,
        datetime(2026, 1, 1, tzinfo=UTC),
        2,
        "webhook",
        "https://h.example.com/hook",
        "ctw_" + "s" * 43,
        {"event": "order_completed", "amount": "1.00"},
    )
    method, url, body, headers = build_request(claimed, 1_700_000_000)
    assert (method, url) == ("POST", "https://h.example.com/hook")
    assert body == b'{"event":"order_completed","amount":"1.00"}'
    assert headers["X-Clicktrack-Timestamp"] == "1700000000"
    assert headers["X-Clicktrack-Event-Id"] == "00000000-0000-0000-0000-000000000007"
    secret = "ctw_" + "s" * 43
    expected = hmac.new(secret.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert headers["X-Clicktrack-Signature"] == "sha256=" + expected
    assert signing.valid(secret, "1700000000", body, "sha256=" + expected)


@pytest.mark.parametrize(
    ("url", "rules", "refused"),
    [
        ("https://hooks.example.com/pb", DestinationRules(), None),
        ("http://93.184.215.14/pb", DestinationRules(), None),
        ("http://10.1.2.3/pb", DestinationRules(), "destination 10.1.2.3 is a private address"),
        ("http://10.1.2.3/pb", DestinationRules(allow_private=True), None),
        ("http://10.1.2.3/pb", DestinationRules(allow_networks=("10.1.0.0/16",)), None),
        (
            "http://169.254.169.254/x",
            DestinationRules(allow_private=True),
            "destination 169.254.169.254 is a cloud metadata address",
        ),
        (
            "http://LOCALHOST:8080/x",
            DestinationRules(),
            "destination 127.0.0.1 is a loopback address",
        ),
        ("http://localhost/x", DestinationRules(allow_networks=("127.0.0.0/8",)), None),
        ("http://[fe80::1]/x", DestinationRules(), "destination fe80::1 is a link-local address"),
    ],
)
def test_a_host_the_sender_would_refuse_is_known_when_written(
    url: str, rules: DestinationRules, refused: str | None
) -> None:
    assert written_refusal(url, rules) == refused
