"""``python -m app.cli``: operator commands. Bad input gets a message and a non-zero exit.

Commands let errors propagate: ``main`` reports any ``ClickTrackError`` (``app/errors.py``;
``CliError`` for the CLI's own messages) as one line, ``error: <message>``, exit code 1; bad
settings exit 2. Arguments are read by the bounded types of ``app/cli_apikeys.py`` (exit code
2); a value Postgres still refuses is reported the same way, its transaction undone."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from app.audit.fields import closes_recorder
from app.audit.log import cli_actor, record
from app.caps.screening import order_screening
from app.cli_accounts import AccountCommands
from app.cli_apikeys import ApiKeyCommands, positive_id, whole_number
from app.cli_apikeys import day as day_type
from app.cli_apikeys import period as period_type
from app.cli_audit import AuditCommands
from app.cli_caps import CapCommands
from app.cli_dimensions import DimensionCommands
from app.cli_merchants import MerchantCommands
from app.cli_orders import OrderCommands
from app.cli_postbacks import PostbackCommands
from app.cli_withdrawals import WithdrawalCommands
from app.clicks import stream
from app.core.db import create_pool, unreachable
from app.core.keys import RedisKeys
from app.core.migrate import migrate
from app.core.problems import plural
from app.core.redis import REDIS_UNAVAILABLE, create_redis
from app.errors import ClickTrackError
from app.links.recheck import recheck_destinations
from app.money import closing, plans_store
from app.money.periods import Period
from app.money.plan import DEFAULT_PLAN_FILE, read_plan_file
from app.settings import ConfigError, Settings, load_settings
from app.traffic import rollups


class CliError(ClickTrackError):
    """The CLI's own messages; like every ``ClickTrackError``, reported by ``main`` as one
    line on stderr, exit code 1."""


async def _connect(settings: Settings) -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(settings.database_url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise CliError(f"cannot connect to the database ({settings.database_url}): {exc}") from None
    return conn


async def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> None:
    conn = await _connect(settings)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    print("applied: " + ", ".join(applied) if applied else "database is up to date")


MAX_DAYS = 36_500  # a retention of 100 years: the cutoff is always a day Postgres stores
RETENTION_DAYS = whole_number(1, MAX_DAYS)


async def cmd_drop_old_clicks(settings: Settings, args: argparse.Namespace) -> None:
    days = args.days if args.days is not None else settings.click_retention_days
    if not days:
        raise CliError("no retention: pass --days N or set CLICKTRACK_CLICK_RETENTION_DAYS")
    if days > MAX_DAYS:  # --days is bounded by its type; the setting is bounded here
        raise CliError(f"CLICKTRACK_CLICK_RETENTION_DAYS must be at most {MAX_DAYS}: {days}")
    cutoff = datetime.now(UTC).date() - timedelta(days=days)
    conn = await _connect(settings)
    try:
        async with conn.transaction():
            dropped = await conn.fetchval("SELECT drop_click_partitions_before($1::date)", cutoff)
            if dropped:  # nothing dropped, nothing changed: no entry
                await record(
                    conn,
                    cli_actor(),
                    "clicks.drop_old",
                    "click_partitions",
                    cutoff,
                    after={"dropped_before": cutoff, "partitions_dropped": dropped},
                )
    finally:
        await conn.close()
    print(f"dropped {dropped} click partitions before {cutoff}")


async def cmd_load_plan(settings: Settings, args: argparse.Namespace) -> None:
    plan = read_plan_file(args.file)
    conn = await _connect(settings)
    try:
        async with conn.transaction():
            before = await plans_store.get_plan(conn, plan.effective_from)
            outcome = await plans_store.put_plan(conn, plan)
            if outcome is not plans_store.PutOutcome.unchanged:
                await record(
                    conn,
                    cli_actor(),
                    "plan.put",
                    "plan",
                    plan.effective_from,
                    before=None if before is None else before.model_dump(mode="json"),
                    after=plan.model_dump(mode="json"),
                )
    finally:
        await conn.close()
    print(f"plan effective {plan.effective_from} ({plan.name}): {outcome}")


async def cmd_close_period(settings: Settings, args: argparse.Namespace) -> None:
    """One line per publisher (closed, already closed, skipped, failed: why), a summary, and
    exit code 1 when a publisher failed (nothing was written for it: run it again)."""
    period: Period = args.period
    try:
        pool = await create_pool(settings.database_url, max_size=2)
    except (OSError, asyncpg.PostgresError) as exc:
        raise CliError(f"cannot connect to the database ({settings.database_url}): {exc}") from None
    try:
        report = await closing.close_period(
            pool,
            period,
            settings.period_tz,
            datetime.now(UTC),
            publisher_id=args.publisher_id,
            on_closed=closes_recorder(cli_actor()),  # entries in each publisher's transaction
            screening=order_screening(settings),
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        if not unreachable(exc):
            raise
        raise CliError(
            "the database stopped answering; the publishers reported closed stay closed, the "
            f"others are as they were: run close-period {period} again"
        ) from None
    finally:
        await pool.close()
    for result in report.results:
        print(f"period {period}, {closing.describe(result)}")
    print(
        f"period {period}: {len(report.closed)} publisher periods closed now, "
        f"{report.already_closed} already closed, {report.skipped} skipped, "
        f"{len(report.failed)} failed"
    )
    if report.failed:
        ids = ", ".join(str(r.publisher_id) for r in report.failed)
        raise CliError(
            f"{len(report.failed)} publisher(s) could not be closed ({ids}); nothing was written "
            f"for them: fix the cause shown above and run close-period {period} again"
        )


async def cmd_check_links(settings: Settings, args: argparse.Namespace) -> None:
    pool = await create_pool(settings.database_url, max_size=2)
    redis = create_redis(settings, "cli")
    try:
        found = await recheck_destinations(
            pool,
            redis,
            RedisKeys(settings.key_prefix),
            settings.allowed_hosts,
            fix=args.fix,
            legacy_mirror=settings.link_mirror_legacy_writes,
        )
    finally:
        await redis.aclose()
        await pool.close()
    done = "rewritten as" if found.fixed else "would be rewritten as (--fix)"
    for code, stored, normal in found.normalised:
        print(f"{code}: {stored!r} {done} {normal!r}")
    for code, stored, why in found.refused:
        print(f"{code}: {stored!r} refused: {why}")
    print(
        f"{plural(found.checked, 'link')} checked: {len(found.normalised)} not in normal form, "
        f"{len(found.refused)} refused"
    )
    if found.refused:
        raise CliError(
            f"{plural(len(found.refused), 'link')} cannot be sent as stored: edit or disable them"
        )


async def cmd_backfill_rollups(settings: Settings, args: argparse.Namespace) -> None:
    first: date | None = args.from_day
    last: date | None = args.to_day
    if first is not None and last is not None and last < first:
        raise CliError("--to is before --from")
    conn = await _connect(settings)
    try:
        days = await rollups.days_with_clicks(conn, first, last, settings.period_tz)
        total = 0
        for day in days:
            counted = await rollups.backfill_day(conn, day, settings.period_tz)
            total += counted
            print(f"{day}: {plural(counted, 'click')}")
    finally:
        await conn.close()
    print(
        f"rebuilt the traffic rollups of {plural(len(days), 'day')} from {plural(total, 'click')}"
    )


REDRIVE_BATCH = 200  # entries per atomic move


async def cmd_redrive(settings: Settings, args: argparse.Namespace) -> None:
    """Move dead letters or parked entries back into their shard's click stream, printing
    each; ``--limit`` bounds the entries moved, over all shards."""
    if args.shard is not None and args.shard >= settings.stream_shards:
        raise CliError(
            f"--shard {args.shard}: the stream has {plural(settings.stream_shards, 'shard')} "
            f"(CLICKTRACK_STREAM_SHARDS), numbered from 0"
        )
    shards = range(settings.stream_shards) if args.shard is None else [args.shard]
    redis = create_redis(settings, "cli")
    moved: dict[int, int] = {}
    try:
        for shard in shards:
            left = None if args.limit is None else args.limit - sum(moved.values())
            if left == 0:
                break
            keys = RedisKeys(settings.key_prefix, shard)
            moved[shard] = await _redrive_shard(redis, keys, args.source, left, args.dry_run)
    except REDIS_UNAVAILABLE as exc:
        raise CliError(f"cannot use Redis ({settings.redis_url}): {exc}") from None
    finally:
        await redis.aclose()
    what = "dead letters" if args.source == "dead" else "parked entries"
    total = sum(moved.values())
    verb = "would move" if args.dry_run else "moved"
    by_shard = ", ".join(f"shard {shard}: {n}" for shard, n in moved.items() if n)
    print(f"{verb} {total} {what} back into the click stream" + (f" ({by_shard})" if total else ""))


async def _redrive_shard(
    redis: aioredis.Redis, keys: RedisKeys, source: str, limit: int | None, dry_run: bool
) -> int:
    """One shard's side stream, in batches, up to its newest entry as of now (an entry set
    aside again meanwhile waits for the next run); returns how many were (or would be)
    moved."""
    side = keys.dead_letter_stream if source == "dead" else keys.parked_stream
    until = await stream.last_id(redis, side)
    moved, after = 0, None
    while until is not None and (limit is None or moved < limit):
        count = REDRIVE_BATCH if limit is None else min(REDRIVE_BATCH, limit - moved)
        batch = await stream.redrive(redis, keys, side, count, after, until, dry_run=dry_run)
        if not batch:
            break
        for entry in batch:
            origin, reason = entry.original_id.decode(), entry.reason
            if not entry.movable:
                outcome = "kept (no payload)"
            else:
                outcome = "would move" if dry_run else f"moved to {(entry.new_id or b'').decode()}"
                moved += 1
            print(
                f"shard {keys.shard} {entry.side_id.decode()} (was {origin}): {outcome}; {reason}"
            )
        after = batch[-1].side_id
    return moved


Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, None]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(
        run=cmd_migrate
    )

    AccountCommands(_connect).register(sub, positive_id)
    ApiKeyCommands(_connect).register(sub, positive_id)

    drop = sub.add_parser("drop-old-clicks", help="drop clicks older than the retention")
    drop.add_argument(
        "--days", type=RETENTION_DAYS, default=None, help=f"keep this many days (1 to {MAX_DAYS})"
    )
    drop.set_defaults(run=cmd_drop_old_clicks)

    MerchantCommands(_connect).register(sub)

    plan = sub.add_parser("load-plan", help="load a commission plan (TOML or JSON) into Postgres")
    plan.add_argument(
        "file", type=Path, nargs="?", default=DEFAULT_PLAN_FILE, help="default: the bundled plan"
    )
    plan.set_defaults(run=cmd_load_plan)

    close = sub.add_parser("close-period", help="close a calculation period (YYYY-MM)")
    close.add_argument(
        "period", type=period_type, help="YYYY-MM: the period from the 10th of that month"
    )
    close.add_argument("--publisher-id", type=positive_id, default=None)
    close.set_defaults(run=cmd_close_period)

    _add_check_links(sub)
    backfill = sub.add_parser(
        "backfill-rollups",
        help="rebuild the traffic rollups from raw clicks (days in CLICKTRACK_PERIOD_TIMEZONE)",
    )
    backfill.add_argument("--from", dest="from_day", type=day_type, default=None, help="YYYY-MM-DD")
    backfill.add_argument("--to", dest="to_day", type=day_type, default=None, help="YYYY-MM-DD")
    backfill.set_defaults(run=cmd_backfill_rollups)
    DimensionCommands(_connect).register(sub)

    _add_redrive(sub)
    WithdrawalCommands(_connect).register(sub, positive_id)
    AuditCommands(_connect).register(sub, positive_id)
    CapCommands(_connect).register(sub, positive_id)
    PostbackCommands(_connect).register(sub)
    OrderCommands(_connect).register(sub, positive_id)
    return parser


def _add_check_links(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "check-links", help="check stored destinations against the rules; --fix normalises them"
    )
    check.add_argument("--fix", action="store_true", help="rewrite them in their normal form")
    check.set_defaults(run=cmd_check_links)


def _add_redrive(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    redrive = sub.add_parser(
        "redrive",
        help="move dead letters or parked entries back into the click stream, each once",
    )
    redrive.add_argument(
        "--from", dest="source", choices=["dead", "parked"], default="dead",
        help="the dead letters (default) or the parked entries (a record version a flusher "
        "did not read)",
    )  # fmt: skip
    redrive.add_argument("--shard", type=whole_number(0), default=None, help="one shard only")
    redrive.add_argument("--limit", type=positive_id, default=None, help="move at most N")
    redrive.add_argument("--dry-run", action="store_true", help="print, move nothing")
    redrive.set_defaults(run=cmd_redrive)


def _first_line(exc: BaseException) -> str:
    """An exception's message, its first line only (Postgres adds details below)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names; its exit code. A command's refusal, or Postgres's
    refusal of a value (its transaction rolled back: nothing is half-written), is one line on
    stderr, ``error: ...``, exit code 1; bad arguments exit 2 (argparse), bad settings 2."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc.describe()}", file=sys.stderr)
        return 2
    command: Command = args.run
    try:
        asyncio.run(command(settings, args))
    except ClickTrackError as exc:  # the one place a command's error becomes a message
        print(f"error: {exc.describe()}", file=sys.stderr)
        return 1
    except asyncpg.UndefinedTableError as exc:
        print(
            f"error: the database is not migrated ({_first_line(exc)}): run migrate",
            file=sys.stderr,
        )
        return 1
    except asyncpg.DataError as exc:  # a last line: the argument types refuse such values first
        print(f"error: the value was refused: {_first_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
