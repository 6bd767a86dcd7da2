"""The merchant's postback: an order reported server to server, signed with HMAC-SHA256.

Authentication is the signature (``app.accounts.merchants``), not an API key. The body is read raw,
checked, and only then parsed: the signature covers the exact bytes sent.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from app.accounts.merchants import (
    MERCHANT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    postback_secrets,
    verify_any,
)
from app.api import bodies
from app.api.deps import ResourcesDep
from app.api.params import PRINTABLE, Instant
from app.errors import Forbidden, InvalidInput, TooLarge, Unauthorized
from app.links.model import echoed
from app.money.plan import CATEGORY_PATTERN, MAX_CATEGORY_LENGTH
from app.orders.attribution import AttributionRules
from app.orders.status import Attribution, OrderStatus
from app.orders.store import OrderReport, RecordOutcome, record_postback
from app.settings import Settings

router = APIRouter(tags=["postback"])

MAX_BODY_BYTES = 16 * 1024
# Orders older than this are surely a mistake (and would fall before any period or plan).
EARLIEST_ORDER = datetime(2000, 1, 1, tzinfo=UTC)


class PostbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is refused, not dropped

    order_id: str = Field(
        min_length=1, max_length=128, pattern=PRINTABLE, description="The merchant's order id."
    )
    click_id: str = Field(
        min_length=1,
        max_length=128,
        pattern=PRINTABLE,
        description="The click id the redirect sent the merchant.",
    )
    order_time: Instant = Field(description="When the buyer paid for the order.")
    amount: Decimal = Field(
        ge=0,
        decimal_places=2,
        description="US dollars, at most CLICKTRACK_MAX_ORDER_AMOUNT; for 'partially_refunded' "
        "the amount left after the refund.",
    )
    currency: Literal["USD"] = "USD"
    category: str = Field(
        max_length=MAX_CATEGORY_LENGTH,
        pattern=CATEGORY_PATTERN,
        description="Product category: lowercase slugs, '/' between levels.",
    )
    new_buyer: StrictBool
    status: OrderStatus
    status_time: Instant | None = Field(
        default=None,
        description="When the status took effect (for 'completed': the transaction time); "
        "default: when the postback is received.",
    )


class PostbackOut(BaseModel):
    outcome: RecordOutcome
    order_id: str
    status: OrderStatus
    attribution: Attribution


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise TooLarge(f"a postback body is at most {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise TooLarge(f"a postback body is at most {MAX_BODY_BYTES} bytes")
    return bytes(body)


def _parse(body: bytes) -> PostbackIn:
    """The body read as every API body is (``bodies.parse``: UTF-8, no key twice, a syntax
    error at its character, nesting too deep said in words), then validated as FastAPI
    validates a body: faults under ``body.<field>``."""
    try:
        return PostbackIn.model_validate(bodies.parse(body))
    except ValidationError as exc:
        errors = [{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]
        raise RequestValidationError(errors) from None


def _report(sent: PostbackIn, received_at: datetime, skew: timedelta) -> OrderReport:
    latest = received_at + skew
    if not EARLIEST_ORDER <= sent.order_time <= latest:
        raise InvalidInput("must be after 2000 and not in the future", field="order_time")
    status_at = sent.status_time or max(received_at, sent.order_time)
    if not sent.order_time <= status_at <= latest:
        raise InvalidInput("must be between order_time and now", field="status_time")
    return OrderReport(
        order_ref=sent.order_id,
        click_ref=sent.click_id,
        ordered_at=sent.order_time,
        amount=sent.amount,
        currency=sent.currency,
        category=sent.category,
        new_buyer=sent.new_buyer,
        status=sent.status,
        status_at=status_at,
    )


def _check_amount(sent: PostbackIn, largest: Decimal) -> None:
    """The amount's bounds: at most ``largest`` (CLICKTRACK_MAX_ORDER_AMOUNT); above 0 for a
    partial refund (the amount left after it)."""
    if sent.amount > largest:
        raise InvalidInput(
            f"{echoed(sent.amount)} is more than the largest order amount accepted "
            f"({largest} US dollars)",
            field="amount",
        )
    if sent.status is OrderStatus.partially_refunded and sent.amount <= 0:
        raise InvalidInput(
            "a partial refund reports the amount left after it, more than 0; report a full "
            "refund with status 'refunded'",
            field="amount",
        )


def attribution_rules(settings: Settings) -> AttributionRules:
    """The attribution window and clock tolerance a new order is judged by."""
    return AttributionRules(
        window=timedelta(days=settings.attribution_window_days),
        skew=timedelta(seconds=settings.attribution_clock_skew_s),
    )


@router.post(
    "/postback",
    responses={
        401: {"description": "Unknown merchant, bad signature or stale timestamp"},
        403: {"description": "The merchant is disabled"},
    },
)
async def postback(request: Request, resources: ResourcesDep) -> PostbackOut:
    """Report an order, or a change of its status. Idempotent: the same postback again
    changes nothing; a status older than the order's is ignored."""
    settings = resources.settings
    merchant = request.headers.get(MERCHANT_HEADER, "")
    if not merchant.isascii() or not merchant.isdigit() or len(merchant) > 18:
        raise Unauthorized("missing or malformed X-Clicktrack-Merchant header")
    body = await _read_body(request)
    async with resources.pool.acquire() as conn:
        found = await postback_secrets(conn, int(merchant))
        if found is None:
            raise Unauthorized(f"unknown merchant {echoed(merchant)} (X-Clicktrack-Merchant)")
        # A missing, stale or wrong signature raises SignatureError: 401. During a secret
        # rotation's overlap, the old secret is accepted too.
        verify_any(
            found.accepted,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            body,
            now=time.time(),
            max_skew_s=settings.postback_max_skew_s,
        )
        # Said only to a caller that proved it holds the secret: to anyone else a disabled
        # merchant is a wrong signature.
        if found.disabled:
            raise Forbidden(
                f"merchant {merchant} is disabled: its postbacks are refused until an operator "
                "enables it again (orders already reported are kept)"
            )
        sent = _parse(body)
        _check_amount(sent, settings.max_order_amount)
        report = _report(sent, datetime.now(UTC), timedelta(seconds=settings.postback_max_skew_s))
        # Facts that differ from the order's first report raise OrderConflict: 409.
        order, outcome = await record_postback(
            conn, int(merchant), report, attribution_rules(settings)
        )
    return PostbackOut(
        outcome=outcome,
        order_id=order.order_ref,
        status=order.status,
        attribution=order.attribution,
    )
