"""The operator command ``backfill-dimensions``, registered by ``app/cli.py``: fills the
traffic dimensions (issue 19; ``app/flusher/dimensions.py``) of stored clicks that have none,
the clicks stored before migration 028 or while ``CLICKTRACK_DIMENSIONS`` was off.

They are resolved from what the click row kept: its user agent, address, referer and
Accept-Language, with the flusher's resolver (``CLICKTRACK_GEO_DATABASE`` included). An
address stored truncated gives its network's country (almost always the address's own); a
hashed one gives none: the country the redirect resolves before hashing travels in the click
record only, never in the row.

Bounded: one UTC day (one partition) at a time, ``--batch`` clicks per read and per update,
each update its own statement, walked in click id order (the primary key's index). Resumable
and idempotent: only rows whose dimension columns are all NULL are read and updated, so a
run stopped anywhere is simply run again, and a second run changes nothing. A click from
which nothing can be told (no user agent, no address, ...) stays "unknown" and is read
again by every run; it is never written.

Then the traffic rollups of the days it filled are recounted (``rollups.backfill_day``, as
``backfill-rollups`` does, in the period time zone: a UTC day touches one or two of its
days), so reports by country, device, ... show the filled values instead of "unknown"; their
sums do not change.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import asyncpg

from app.cli_apikeys import day
from app.core.problems import plural
from app.dimensions.resolve import Resolver
from app.errors import ClickTrackError
from app.flusher.dimensions import DIMENSION_COLUMNS, NO_VALUES, shared_resolver, values
from app.settings import Settings
from app.traffic import rollups
from app.traffic.days import day_of

Connect = Callable[[Settings], Awaitable[asyncpg.Connection]]
DEFAULT_BATCH = 5000
MAX_BATCH = 100_000

# "Has none": every dimension column NULL (what migration 028 left, and a flusher with
# CLICKTRACK_DIMENSIONS=off writes).
_NONE = " AND ".join(f"{{t}}{column} IS NULL" for column in DIMENSION_COLUMNS)
_READ = f"""
SELECT click_id, ts, user_agent, ip, referer, accept_language
FROM clicks
WHERE ts >= $1 AND ts < $2 AND click_id > $3 AND {_NONE.format(t="")}
ORDER BY click_id
LIMIT $4
"""
_SET = ", ".join(f"{column} = u.{column}" for column in DIMENSION_COLUMNS)
# One statement per batch, the values as arrays: one round trip, however large the batch.
# The "has none" condition again: a concurrent run (or flusher) may have filled a row since.
_UPDATE = f"""
UPDATE clicks AS c SET {_SET}
FROM unnest(
    $1::uuid[], $2::timestamptz[], $3::text[], $4::bigint[], $5::text[], $6::text[],
    $7::int[], $8::text[], $9::int[], $10::text[], $11::text[]
) AS u(click_id, ts, {", ".join(DIMENSION_COLUMNS)})
WHERE c.click_id = u.click_id AND c.ts = u.ts AND {_NONE.format(t="c.")}
"""
_HELP = (
    "fill the traffic dimensions (country, device, browser, OS, referrer host, "
    "language) of stored clicks that have none, from their user agent, address, "
    "referer and language; a truncated address gives its network's country, a hashed "
    "one none; then recount the traffic rollups of the days filled. Resumable: run it "
    "again after a stop"
)
_FIRST_DAY = "SELECT min(ts) FROM clicks"
# Below every UUID: the first read of a day starts here.
_FIRST_ID = "00000000-0000-0000-0000-000000000000"


class BackfillError(ClickTrackError):
    """The command's arguments cannot be done (``--to`` before ``--from``)."""


@dataclass
class Filled:
    """What a run did: clicks read (they had no dimensions) and updated (now have some)."""

    read: int = 0
    updated: int = 0


def _batch_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_BATCH}: {text!r}")
    return value


async def fill_day(conn: asyncpg.Connection, resolver: Resolver, day: date, batch: int) -> Filled:
    """Fill the dimensions of one UTC day's clicks that have none, ``batch`` at a time."""
    low = datetime.combine(day, time(), tzinfo=UTC)
    high = low + timedelta(days=1)
    filled = Filled()
    after = _FIRST_ID
    while True:
        rows = await conn.fetch(_READ, low, high, after, batch)
        if not rows:
            return filled
        filled.read += len(rows)
        after = str(rows[-1]["click_id"])
        found: list[tuple[object, ...]] = []
        for row in rows:
            dimensions = resolver.resolve(
                row["user_agent"], row["ip"], row["referer"], row["accept_language"]
            )
            resolved = values(dimensions)
            if resolved != NO_VALUES:  # nothing told: leave it, "unknown" either way
                found.append((row["click_id"], row["ts"], *resolved))
        if found:
            columns = [list(column) for column in zip(*found, strict=True)]
            status = await conn.execute(_UPDATE, *columns)
            filled.updated += int(status.rsplit(" ", 1)[-1])
        if len(rows) < batch:
            return filled


def zone_days(utc_day: date, tz: tzinfo) -> list[date]:
    """The days in ``tz`` that the UTC day ``utc_day`` overlaps (one or two)."""
    low = datetime.combine(utc_day, time(), tzinfo=UTC)
    first, last = day_of(low, tz), day_of(low + timedelta(days=1, microseconds=-1), tz)
    return sorted({first, last})


async def recount(conn: asyncpg.Connection, utc_days: list[date], tz: tzinfo) -> None:
    """Rebuild the traffic rollups of the days in ``tz`` that the filled UTC days overlap."""
    days = sorted({zoned for one in utc_days for zoned in zone_days(one, tz)})
    total = 0
    for one in days:
        total += await rollups.backfill_day(conn, one, tz)
    if days:
        print(
            f"recounted the traffic rollups of {plural(len(days), 'day')} "
            f"({plural(total, 'click')})"
        )


@dataclass(frozen=True)
class DimensionCommands:
    connect: Connect

    async def backfill(self, settings: Settings, args: argparse.Namespace) -> None:
        """Fill the days from ``--from`` (default: the oldest click's) to ``--to``
        (default: today), UTC, printing each day that had clicks without dimensions; then
        recount the rollups of the days filled."""
        first: date | None = args.from_day
        last: date = args.to_day or datetime.now(UTC).date()
        if first is not None and last < first:
            raise BackfillError("--to is before --from")
        # Built before connecting: an unusable CLICKTRACK_GEO_DATABASE is refused first.
        resolver = shared_resolver(settings.geo_database_path, settings.country_header)
        conn = await self.connect(settings)
        total = Filled()
        filled_days: list[date] = []
        try:
            if first is None:
                oldest: datetime | None = await conn.fetchval(_FIRST_DAY)
                first = oldest.astimezone(UTC).date() if oldest is not None else last
            current = first
            while current <= last:
                filled = await fill_day(conn, resolver, current, args.batch)
                if filled.read:
                    print(f"{current}: {filled.updated} of {plural(filled.read, 'click')} filled")
                total.read += filled.read
                total.updated += filled.updated
                if filled.updated:
                    filled_days.append(current)
                current += timedelta(days=1)
            await recount(conn, filled_days, settings.period_tz)
        finally:
            await conn.close()
        print(
            f"filled the dimensions of {plural(total.updated, 'click')}; "
            f"{total.read - total.updated} had nothing to tell"
        )

    def register(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add the command to the CLI's parser."""
        backfill = sub.add_parser(
            "backfill-dimensions",
            help=_HELP,
            description=_HELP,
        )
        backfill.add_argument(
            "--from", dest="from_day", type=day, default=None,
            help="YYYY-MM-DD, UTC (default: the oldest click's day)",
        )  # fmt: skip
        backfill.add_argument(
            "--to", dest="to_day", type=day, default=None, help="YYYY-MM-DD, UTC (default: today)"
        )
        backfill.add_argument(
            "--batch", type=_batch_size, default=DEFAULT_BATCH,
            help=f"clicks per read and update (1 to {MAX_BATCH}; default {DEFAULT_BATCH})",
        )  # fmt: skip
        backfill.set_defaults(run=self.backfill)
