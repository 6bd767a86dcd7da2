"""A publisher's completed sales of a calculation period: what its Table 2 incentive rests on.

The sales of period P are the amounts of the publisher's orders completed in P: attributed,
completed within 60 days of purchase (``completed_in_time``), their completion time in P,
at their current amount (a partial refund lowers it; a refunded, invalid or disqualified
order counts for nothing, whenever that became known). They are a function of the orders
alone, never of when postbacks arrived or periods were closed: an order completed in P and
reported after P was closed counts in P, and a refund reported after the close takes its
order out of P. For orders reported on time, they are the amounts P's close credited, net
of the refunds since.

The close (``closing``) and the estimates (``earnings``) both read sales through this
module, so an estimate uses the incentive the close will use.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo
from decimal import Decimal

from app.core.db import Conn
from app.money.commission import ZERO
from app.money.periods import Period
from app.orders.status import completed_in_time


async def period_sales(
    conn: Conn, publisher_id: int, periods: Iterable[Period], tz: tzinfo
) -> dict[Period, Decimal]:
    """The sales of each of ``periods`` (one query, whatever their number)."""
    wanted = sorted(set(periods))
    if not wanted:
        return {}
    rows = await conn.fetch(
        f"""SELECT p.n, coalesce(sum(o.amount), 0.00) AS sales
            FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS p(s, e, n)
            LEFT JOIN orders o ON o.publisher_id = $1 AND o.attribution = 'attributed'
                AND {completed_in_time("o")} AND o.completed_at >= p.s AND o.completed_at < p.e
            GROUP BY p.n""",
        publisher_id,
        [p.starts_at(tz) for p in wanted],
        [p.ends_at(tz) for p in wanted],
    )
    found = {wanted[r["n"] - 1]: r["sales"] for r in rows}
    return {p: found.get(p, ZERO) for p in wanted}


class SalesBook:
    """A publisher's period sales, each read once and kept: for a close (in its transaction)
    or an estimate, which look up the same few periods many times."""

    def __init__(self, conn: Conn, publisher_id: int, tz: tzinfo) -> None:
        self._conn = conn
        self._publisher_id = publisher_id
        self._tz = tz
        self._known: dict[Period, Decimal] = {}

    async def load(self, periods: Iterable[Period]) -> None:
        """Read the sales of those of ``periods`` not read yet, in one query."""
        missing = [p for p in set(periods) if p not in self._known]
        self._known.update(await period_sales(self._conn, self._publisher_id, missing, self._tz))

    async def of(self, period: Period) -> Decimal:
        if period not in self._known:
            await self.load([period])
        return self._known[period]

    def forget(self) -> None:
        """Read again from now on (orders changed since)."""
        self._known.clear()
