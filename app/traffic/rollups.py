"""Traffic rollups: counted in as clicks are written, rebuilt from raw clicks on demand.

Reports read ``traffic_link_days``, ``traffic_tracking_days`` (migrations/020) and
``traffic_dimension_days`` (029), never the raw clicks. One statement counts a set of click
rows into them:

1. ``new_clicks``: the rows to count. For the flusher, the ``INSERT … ON CONFLICT DO NOTHING
   RETURNING`` of its batch, so only the rows actually inserted are counted: a click
   delivered twice is counted once, and the rollups commit or roll back with the rows.
2. ``candidates``: per billable (unflagged) session and key ``(day, link, af, cn, cv)``, its
   earliest click (by time, then click id) with that click's traffic dimensions.
3. ``firsts``: those keys inserted into ``traffic_sessions`` ON CONFLICT DO NOTHING; what it
   returns are the unique clicks, and ``winners`` the candidates they came from (joined on
   the non-null day, link and session, so the join hashes; the tracking strings compare
   NULL-safely as a filter).
4. the counts per ``(publisher, day, link, af, cn, cv)`` are added to
   ``traffic_tracking_days`` with ``ON CONFLICT DO UPDATE SET clicks = clicks +
   excluded.clicks``; per dimension and value (``DIMENSIONS``, unpivoted with ``LATERAL
   VALUES``), the counts per ``(publisher, day, link)`` are appended to
   ``traffic_dimension_deltas`` (migration 036): clicks and flagged under each click's own
   value, a unique click under its winner's.
5. ``fold``, about once a second (the flusher loop): the pending deltas are deleted and their
   sums added to ``traffic_dimension_days`` and, one dimension's sums, to
   ``traffic_link_days``. For every dimension the values add up to the ``traffic_link_days``
   row. Upserting those keys once a second instead of once per batch took Postgres's CPU per
   click with every rollup from ~42 to ~30 us on the sink alone (docs/performance.md);
   reports by day, link or dimension lag by about a second.

A click's ``day`` is its day in the period time zone: the statement takes the zone's name as
its first parameter (``(ts AT TIME ZONE $1)::date``). Rollups counted under one zone stay in
its days: after changing ``CLICKTRACK_PERIOD_TIMEZONE``, ``backfill-rollups`` recounts them.

Rows are inserted in key order, so two flushers adding to the same rollup rows lock them in
the same order; folds run one at a time (``FOLD_LOCK``). ``backfill_day`` runs the same
statement over one day of raw clicks after folding what is pending and deleting that day's
rollups, under a table lock that makes flushers wait for it.
"""

from __future__ import annotations

from datetime import date, timedelta, tzinfo

from app.core.db import Conn
from app.traffic.days import day_bounds, day_of, zone_name

# The traffic dimensions ``traffic_dimension_days`` keeps: its name for each, and the
# ``clicks`` column holding it (country is char(2): compared as text).
DIMENSIONS = {
    "country": "country",
    "device": "device",
    "browser": "browser",
    "os": "os",
    "referrer": "referrer_host",
    "language": "language",
}
_DIMENSION_COLUMNS = ", ".join(DIMENSIONS.values())
# What a source of ``new_clicks`` must return.
SOURCE_COLUMNS = (
    f"click_id, ts, publisher_id, link_id, af, cn, cv, session_id, flags, {_DIMENSION_COLUMNS}"
)
_KEY = "publisher_id, day, link_id, af, cn, cv"
DIMENSION_KEY = "publisher_id, dimension, day, link_id, value"  # traffic_dimension_days'
_ADD = (
    "clicks = t.clicks + excluded.clicks, "
    "unique_clicks = t.unique_clicks + excluded.unique_clicks, "
    "flagged = t.flagged + excluded.flagged"
)
_TABLES = (
    "traffic_sessions",
    "traffic_tracking_days",
    "traffic_link_days",
    "traffic_dimension_days",
)
# One folder at a time (``fold``, and ``backfill_day`` before its table locks): the rollup
# rows a fold adds to are never contended by another fold, in whatever order it writes them.
FOLD_LOCK = 7_214_022_036
# The ``LATERAL VALUES`` list that turns a click row into one row per dimension: (dimension,
# value), here and in the recounts. Compared by bytes (COLLATE "C"), as the tables' keys are:
# the database's collation would make the batch's sort of its dimension rows several times
# slower.
UNPIVOT = ", ".join(
    f'(\'{name}\' COLLATE "C", c.{column}::text COLLATE "C")' for name, column in DIMENSIONS.items()
)
_SESSION = "day, link_id, session_id, af, cn, cv"
_SAME_SESSION = (
    "w.day = f.day AND w.link_id = f.link_id AND w.session_id = f.session_id"
    " AND w.af IS NOT DISTINCT FROM f.af AND w.cn IS NOT DISTINCT FROM f.cn"
    " AND w.cv IS NOT DISTINCT FROM f.cv"
)


def _by_dimension() -> str:
    """The CTEs adding each click, and each unique click's winner, under its value of every
    dimension (one row per click and dimension, grouped per key and value)."""
    return f"""
    winners AS (
        SELECT w.* FROM firsts f JOIN candidates w ON {_SAME_SESSION}
    ),
    by_dimension AS (
        INSERT INTO traffic_dimension_deltas ({DIMENSION_KEY}, clicks, unique_clicks, flagged)
        SELECT publisher_id, d.dimension, day, link_id, d.value,
               sum(c.clicks), sum(c.firsts), sum(c.flagged)
        FROM (
            -- Clicks alike in every dimension summed first: fewer rows to unpivot six-fold.
            SELECT publisher_id, day, link_id, {_DIMENSION_COLUMNS},
                   sum(clicks) AS clicks, sum(firsts) AS firsts, sum(flagged) AS flagged
            FROM (
                SELECT publisher_id, (ts AT TIME ZONE $1::text)::date AS day, link_id,
                       {_DIMENSION_COLUMNS}, 1 AS clicks, 0 AS firsts,
                       (flags <> 0)::int AS flagged
                FROM new_clicks
                UNION ALL
                SELECT publisher_id, day, link_id, {_DIMENSION_COLUMNS}, 0, 1, 0 FROM winners
            ) AS each_click
            GROUP BY publisher_id, day, link_id, {_DIMENSION_COLUMNS}
        ) AS c
        CROSS JOIN LATERAL (VALUES {UNPIVOT}) AS d(dimension, value)
        GROUP BY {DIMENSION_KEY}
    )"""


def counting(source: str) -> str:
    """One statement: count the rows of ``source`` (a query or an ``INSERT … RETURNING`` of
    ``SOURCE_COLUMNS``) into the rollups; it returns how many rows it counted. Its ``$1`` is
    the name of the time zone whose days the clicks are counted in (``days.zone_name``)."""
    return f"""
    WITH new_clicks AS ({source}),
    candidates AS (
        SELECT DISTINCT ON (day, link_id, session_id, af, cn, cv)
               (ts AT TIME ZONE $1::text)::date AS day, link_id,
               session_id COLLATE "C" AS session_id, af COLLATE "C" AS af,
               cn COLLATE "C" AS cn, cv COLLATE "C" AS cv, publisher_id, {_DIMENSION_COLUMNS}
        FROM new_clicks WHERE flags = 0
        ORDER BY day, link_id, session_id, af, cn, cv, ts, click_id
    ),
    firsts AS (
        INSERT INTO traffic_sessions ({_SESSION}, publisher_id)
        SELECT {_SESSION}, publisher_id FROM candidates
        ORDER BY 1, 2, 3, 4, 5, 6
        ON CONFLICT DO NOTHING
        RETURNING {_SESSION}, publisher_id
    ),
    counted AS (
        SELECT {_KEY}, sum(clicks) AS clicks, sum(firsts) AS unique_clicks,
               sum(flagged) AS flagged
        FROM (
            SELECT publisher_id, (ts AT TIME ZONE $1::text)::date AS day, link_id, af, cn, cv,
                   1 AS clicks, 0 AS firsts, (flags <> 0)::int AS flagged
            FROM new_clicks
            UNION ALL
            SELECT {_KEY}, 0, 1, 0 FROM firsts
        ) AS c
        GROUP BY {_KEY}
    ),
    by_tracking AS (
        INSERT INTO traffic_tracking_days AS t ({_KEY}, clicks, unique_clicks, flagged)
        SELECT * FROM counted ORDER BY {_KEY}
        ON CONFLICT ON CONSTRAINT traffic_tracking_days_key DO UPDATE SET {_ADD}
    ),{_by_dimension()}
    SELECT count(*) FROM new_clicks"""


_FOLD = f"""
    WITH taken AS (
        DELETE FROM traffic_dimension_deltas
        RETURNING {DIMENSION_KEY}, clicks, unique_clicks, flagged
    ),
    summed AS (
        SELECT {DIMENSION_KEY}, sum(clicks) AS clicks, sum(unique_clicks) AS unique_clicks,
               sum(flagged) AS flagged
        FROM taken GROUP BY {DIMENSION_KEY}
    ),
    by_link AS (
        -- Every click is counted once under each dimension: one dimension's sums are the link's.
        INSERT INTO traffic_link_days AS t
            (publisher_id, day, link_id, clicks, unique_clicks, flagged)
        SELECT publisher_id, day, link_id, sum(clicks), sum(unique_clicks), sum(flagged)
        FROM summed WHERE dimension = 'country' GROUP BY publisher_id, day, link_id
        ON CONFLICT (publisher_id, day, link_id) DO UPDATE SET {_ADD}
    ),
    by_dimension AS (
        INSERT INTO traffic_dimension_days AS t ({DIMENSION_KEY}, clicks, unique_clicks,
                                                 flagged)
        SELECT * FROM summed
        ON CONFLICT ON CONSTRAINT traffic_dimension_days_key DO UPDATE SET {_ADD}
    )
    SELECT count(*) FROM taken"""


async def fold(conn: Conn) -> int:
    """Add the pending ``traffic_dimension_deltas`` rows to ``traffic_dimension_days`` and
    ``traffic_link_days`` and delete them, in one transaction under ``FOLD_LOCK`` (waiting
    for a fold in progress); return how many delta rows it folded. Rows committed while it
    runs are left for the next fold."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", FOLD_LOCK)
        folded: int = await conn.fetchval(_FOLD)
    return folded


_RECOUNT_DAY = counting(
    f"SELECT {SOURCE_COLUMNS} FROM clicks WHERE ts >= $2::timestamptz AND ts < $3::timestamptz"
)


async def backfill_day(conn: Conn, day: date, tz: tzinfo) -> int:
    """Rebuild the rollups of one day in ``tz`` from its raw clicks; return the clicks counted.

    Runs in one transaction that locks the rollup tables against writers first: a flusher
    writing meanwhile waits, then adds its clicks to the rebuilt counts."""
    start, end = day_bounds(day, tz)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", FOLD_LOCK)
        await conn.execute(
            f"LOCK TABLE {', '.join(_TABLES)}, traffic_dimension_deltas IN SHARE ROW EXCLUSIVE MODE"
        )
        await fold(conn)  # what is pending now counts on the counts this deletes
        for table in _TABLES:
            await conn.execute(f"DELETE FROM {table} WHERE day = $1", day)
        counted: int = await conn.fetchval(_RECOUNT_DAY, zone_name(tz), start, end)
        await fold(conn)
    return counted


async def days_with_clicks(
    conn: Conn, first: date | None, last: date | None, tz: tzinfo
) -> list[date]:
    """The days in ``tz`` between ``first`` and ``last`` (default: every stored day) that have
    raw clicks. Days without any are left alone by a backfill: their raw clicks may have
    been dropped by the retention while their rollups are still wanted."""
    if first is None or last is None:
        row = await conn.fetchrow("SELECT min(ts) AS lo, max(ts) AS hi FROM clicks")
        if row is None or row["lo"] is None:
            return []
        first = first or day_of(row["lo"], tz)
        last = last or day_of(row["hi"], tz)
    found = []
    day = first
    while day <= last:
        start, end = day_bounds(day, tz)
        if await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM clicks WHERE ts >= $1 AND ts < $2)", start, end
        ):
            found.append(day)
        day += timedelta(days=1)
    return found
