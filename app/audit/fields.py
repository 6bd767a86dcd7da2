"""What the audit log keeps of each kind of target: the fields an operator reads, by name.

Secrets are never among them: an API key appears as its prefix, a merchant without its
postback secret (``previous_secret_until`` says only until when an old one is accepted).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from app.audit.log import Actor, record
from app.core.db import Conn

API_KEY = (
    "id",
    "prefix",
    "role",
    "publisher_id",
    "name",
    "status",
    "expires_at",
    "revoked_at",
    "replaced_by",
)
PUBLISHER = ("id", "name", "kind", "network_id")
MERCHANT = ("id", "name", "hosts", "disabled_at", "previous_secret_until")
WITHDRAWAL = (
    "id",
    "publisher_id",
    "amount",
    "fee",
    "payout",
    "status",
    "payment_reference",
    "reject_reason",
)
ORDER = (
    "id",
    "merchant_id",
    "order_ref",
    "publisher_id",
    "status",
    "attribution",
    "disqualified_reason",
)
PERIOD_CLOSE = (
    "publisher_id",
    "period",
    "sales",
    "credited",
    "charged_back",
    "adjusted",
    "orders_credited",
    "orders_charged_back",
    "orders_adjusted",
    "orders_without_plan",
)


def snapshot(target: object, fields: tuple[str, ...]) -> dict[str, Any]:
    """``{field: value}`` of ``target``'s attributes named in ``fields`` (one of the tuples
    above), for ``record``'s ``before``/``after``. Raises ``AttributeError`` for a field the
    target lacks (a programming error)."""
    return {name: getattr(target, name) for name in fields}


class Identified(Protocol):
    """An audited object: its ``id`` is the entry's target."""

    @property
    def id(self) -> int: ...


async def record_change(
    conn: Conn,
    actor: Actor,
    target_kind: str,
    verb: str,
    before: object | None,
    after: Identified,
    fields: tuple[str, ...],
    *,
    publisher_id: int | None = None,
    extra: Mapping[str, object] | None = None,
) -> None:
    """The audit entry ``<target_kind>.<verb>`` of one object (target its ``id``), in the
    caller's transaction: its ``fields`` ``before`` (None: it was just made) and ``after``,
    ``extra`` added to the latter (what is no field of it); ``publisher_id`` as ``record``
    takes it (None: the actor's)."""
    await record(
        conn,
        actor,
        f"{target_kind}.{verb}",
        target_kind,
        after.id,
        before=None if before is None else snapshot(before, fields),
        after={**snapshot(after, fields), **(extra or {})},
        publisher_id=publisher_id,
    )


def period_close_state(close: Any) -> dict[str, Any]:
    """What the audit log keeps of a period close (``app.money.closing.PeriodClose``): its
    totals, the period as YYYY-MM."""
    return {**snapshot(close, PERIOD_CLOSE), "period": str(close.period)}


def closes_recorder(actor: Actor) -> Callable[[Conn, Sequence[Any]], Awaitable[None]]:
    """A period close's hook (``app.money.closing.CloseHook``) that records one
    'period.close' entry per period closed, in the close's transaction: target the period
    (YYYY-MM), publisher the one closed, after its totals."""

    async def record_closes(conn: Conn, closes: Sequence[Any]) -> None:
        for close in closes:
            await record(
                conn,
                actor,
                "period.close",
                "period",
                close.period,
                after=period_close_state(close),
                publisher_id=close.publisher_id,
            )

    return record_closes
