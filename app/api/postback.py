"""The merchant's postback: an order reported server to server, signed with HMAC-SHA256.

Authentication is the signature (``app.accounts.merchants``), not an API key. The body is read raw,
checked, and only then parsed: the signature covers the exact bytes sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
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
from app.api.errors import validation_answer
from app.api.params import PRINTABLE, Instant
from app.caps.screening import order_screening
from app.core.db import Conn
from app.core.metrics import POSTBACKS_RECEIVED
from app.errors import ClickTrackError, Forbidden, InvalidInput, TooLarge, Unauthorized
from app.links.model import echoed
from app.money.plan import CATEGORY_PATTERN, MAX_CATEGORY_LENGTH
from app.orders.attribution import AttributionRules
from app.orders.received import Received, log_received, order_ref_of
from app.orders.status import Attribution, OrderStatus
from app.orders.store import OrderReport, Recorded, RecordOutcome, apply_postback
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


def _refused(exc: Exception) -> tuple[int, str]:
    """The status and message a refusal answers (as ``app/api/errors.py`` renders them)."""
    if isinstance(exc, RequestValidationError):
        return 422, validation_answer(exc)[0]
    assert isinstance(exc, ClickTrackError)
    return exc.status, exc.describe()


async def log_refusal(
    conn: Conn, merchant_id: int, exc: Exception, body: bytes | None, replay_of: int | None = None
) -> int:
    """Log a refused postback (``body``: None when its signature did not verify); return the
    log row's id."""
    status, message = _refused(exc)
    POSTBACKS_RECEIVED.labels("refused").inc()
    entry = Received(
        0,
        merchant_id,
        datetime.now(UTC),
        replay_of,
        status,
        "refused",
        message,
        body,
        order_ref_of(body),
        None,
        None,
        None,
        None,
    )
    return await log_received(conn, entry)


@dataclass(frozen=True)
class Ran:
    """A postback run: its log row, and what it did (``recorded``) or why it was refused
    (``refusal``, a ``ClickTrackError`` or ``RequestValidationError``): one of the two."""

    row_id: int
    recorded: Recorded | None
    refusal: Exception | None

    @property
    def outcome(self) -> str:
        return "refused" if self.recorded is None else self.recorded.outcome.value


async def run_postback(
    conn: Conn,
    merchant_id: int,
    disabled: bool,
    body: bytes,
    received_at: datetime,
    settings: Settings,
    replay_of: int | None = None,
) -> Ran:
    """Apply a verified postback's ``body`` (of merchant ``merchant_id``, ``disabled`` or
    not) as if received at ``received_at`` (UTC), and log it: in the change's own transaction
    when it is applied; after the rollback when it is refused (a disabled merchant, a bad
    body, a conflicting order)."""
    try:
        # Said only to a caller that proved it holds the secret: to anyone else a disabled
        # merchant is a wrong signature.
        if disabled:
            raise Forbidden(
                f"merchant {merchant_id} is disabled: its postbacks are refused until an "
                "operator enables it again (orders already reported are kept)"
            )
        async with conn.transaction():
            recorded = await _apply(conn, merchant_id, body, received_at, settings)
            row_id = await log_received(conn, _applied(merchant_id, body, recorded, replay_of))
    except (ClickTrackError, RequestValidationError) as exc:
        return Ran(await log_refusal(conn, merchant_id, exc, body, replay_of), None, exc)
    POSTBACKS_RECEIVED.labels(recorded.outcome.value).inc()
    return Ran(row_id, recorded, None)


async def _apply(
    conn: Conn, merchant_id: int, body: bytes, received_at: datetime, settings: Settings
) -> Recorded:
    sent = _parse(body)
    _check_amount(sent, settings.max_order_amount)
    report = _report(sent, received_at, timedelta(seconds=settings.postback_max_skew_s))
    # Facts that differ from the order's first report raise OrderConflict: 409.
    return await apply_postback(
        conn, merchant_id, report, attribution_rules(settings), order_screening(settings)
    )


def _applied(merchant_id: int, body: bytes, recorded: Recorded, replay_of: int | None) -> Received:
    order, before = recorded.order, recorded.status_before
    return Received(
        id=0,
        merchant_id=merchant_id,
        received_at=datetime.now(UTC),
        replay_of=replay_of,
        http_status=200,
        outcome=recorded.outcome.value,
        error=None,
        body=body,
        order_ref=order.order_ref,
        order_id=order.id,
        status_before=None if before is None else before.value,
        status_after=order.status.value,
        attribution=order.attribution.value,
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
    changes nothing; a status older than the order's is ignored. Every postback naming a
    merchant that exists is logged (``GET /api/v1/merchants/{id}/postbacks``)."""
    settings = resources.settings
    received_at = datetime.now(UTC)
    merchant = request.headers.get(MERCHANT_HEADER, "")
    if not merchant.isascii() or not merchant.isdigit() or len(merchant) > 18:
        raise Unauthorized("missing or malformed X-Clicktrack-Merchant header")
    body: bytes | None = None
    too_large: TooLarge | None = None
    try:
        body = await _read_body(request)
    except TooLarge as exc:
        too_large = exc
    async with resources.pool.acquire() as conn:
        found = await postback_secrets(conn, int(merchant))
        if found is None:
            raise Unauthorized(f"unknown merchant {echoed(merchant)} (X-Clicktrack-Merchant)")
        try:
            if too_large is not None:
                raise too_large
            assert body is not None
            # A missing, stale or wrong signature raises SignatureError: 401. During a
            # secret rotation's overlap, the old secret is accepted too.
            verify_any(
                found.accepted,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                body,
                now=time.time(),
                max_skew_s=settings.postback_max_skew_s,
            )
        except ClickTrackError as exc:
            await log_refusal(conn, int(merchant), exc, None)  # a stranger's bytes are not kept
            raise
        ran = await run_postback(conn, int(merchant), found.disabled, body, received_at, settings)
    if ran.refusal is not None:
        raise ran.refusal
    assert ran.recorded is not None
    recorded = ran.recorded
    order = recorded.order
    return PostbackOut(
        outcome=recorded.outcome,
        order_id=order.order_ref,
        status=order.status,
        attribution=order.attribution,
    )
