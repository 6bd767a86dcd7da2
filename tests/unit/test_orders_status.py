"""The order status machine, click-id parsing, and postback signatures. Pure rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.accounts.merchants import SignatureError, sign, verify
from app.clicks.record import Flag
from app.orders.attribution import canonical_click_ref, flag_reason, parse_click_ref
from app.orders.status import FINAL, OrderStatus, advances, can_still_qualify, qualifies
from tests.support.orders import uuid7_at

S = OrderStatus
T0 = datetime(2016, 9, 20, tzinfo=UTC)


def apply_all(start: OrderStatus, updates: list[OrderStatus]) -> OrderStatus:
    status = start
    for update in updates:
        if advances(status, update):
            status = update
    return status


def test_forward_moves_only() -> None:
    assert advances(S.incomplete, S.completed_payment)
    assert advances(S.incomplete, S.completed)  # a step may be skipped
    assert advances(S.completed, S.refunded)
    assert not advances(S.completed, S.completed_payment)  # stale
    assert not advances(S.completed, S.completed)  # repeat
    assert not advances(S.refunded, S.invalid) and not advances(S.invalid, S.refunded)
    assert not advances(S.refunded, S.completed)


@given(first=st.sampled_from(S), updates=st.lists(st.sampled_from(S), max_size=12))
def test_any_arrival_order_ends_at_the_most_advanced_status(
    first: OrderStatus, updates: list[OrderStatus]
) -> None:
    final = apply_all(first, updates)
    # Never backwards, and replaying everything again changes nothing.
    assert apply_all(final, [first, *updates]) == final
    ranks = {
        S.incomplete: 0,
        S.completed_payment: 1,
        S.completed: 2,
        S.partially_refunded: 3,
        S.refunded: 4,
        S.invalid: 4,
    }
    assert ranks[final] == max(ranks[s] for s in [first, *updates])
    if final in FINAL:
        # The first final status to arrive wins.
        assert final == next(s for s in [first, *updates] if s in FINAL)


def test_sixty_days_to_complete() -> None:
    assert qualifies(S.completed, T0, T0 + timedelta(days=60))
    assert not qualifies(S.completed, T0, T0 + timedelta(days=60, microseconds=1))
    assert not qualifies(S.completed_payment, T0, None)
    now = T0 + timedelta(days=61)
    assert not can_still_qualify(S.completed_payment, T0, None, now)
    assert can_still_qualify(S.completed_payment, T0, None, T0 + timedelta(days=59))
    assert can_still_qualify(S.completed, T0, T0 + timedelta(days=3), now)
    assert not can_still_qualify(S.refunded, T0, None, T0)


def test_click_ids() -> None:
    click = uuid7_at(T0)
    ref = parse_click_ref(str(click))
    assert ref is not None and ref.click_id == click
    assert abs(ref.made_at - T0) < timedelta(milliseconds=1)
    assert parse_click_ref(str(click).upper().replace("-", "")) == ref
    assert canonical_click_ref(str(click).upper()) == str(click)
    assert parse_click_ref(str(uuid.uuid4())) is None  # not time-ordered: matches no click
    assert parse_click_ref("not-a-click") is None
    assert canonical_click_ref("  not-a-click ") == "not-a-click"
    assert flag_reason(Flag.bot | Flag.duplicate) == "flagged click: bot, duplicate"


def test_signatures() -> None:
    body = b'{"order_id": "A1"}'
    stamp = "1700000000"
    signature = sign("ctm_secret", stamp, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    verify("ctm_secret", stamp, signature, body, now=1700000100, max_skew_s=300)
    cases = [
        ("ctm_other", stamp, signature, body, 1700000000, "does not match"),
        ("ctm_secret", stamp, signature, body + b" ", 1700000000, "does not match"),
        ("ctm_secret", "1700000001", signature, body, 1700000000, "does not match"),
        ("ctm_secret", stamp, signature, body, 1700000301, "away from"),  # too old
        ("ctm_secret", stamp, signature, body, 1699999699, "away from"),  # from the future
        ("ctm_secret", None, signature, body, 1700000000, "missing"),
        ("ctm_secret", stamp, None, body, 1700000000, "missing"),
        ("ctm_secret", "1.7e9", signature, body, 1700000000, "whole seconds"),
        ("ctm_secret", stamp, "sha256=00", body, 1700000000, "does not match"),
    ]
    for secret, ts, sig, sent, now, message in cases:
        with pytest.raises(SignatureError, match=message):
            verify(secret, ts, sig, sent, now=now, max_skew_s=300)
